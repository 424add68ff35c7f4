"""Update rules: the math of each optimizer, written once as a pure elementwise function."""

from . import _math
from ._elementwise import elementwise
from .classic import adadelta, adagrad, adam, adamax, gradient, nadam, radam, rmsprop, sgd

__all__ = ["_math", "adadelta", "adagrad", "adam", "adamax", "elementwise", "gradient", "nadam", "radam",
           "rmsprop", "sgd"]
