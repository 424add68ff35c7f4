"""Training without tuning: :class:`Auto` races a learning-rate grid on held-out data with successive halving
on warmup-stable-decay schedules, and commits the winner; :func:`fit` runs it with the default algorithm.

>>> import torch
>>> from torch.nn import functional as F
>>> from adaptlr.auto import Auto
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(512, 4, generator=g); y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
>>> train = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 384, 32)]
>>> val = [(x[384:], y[384:])]
>>> torch.manual_seed(0); model = torch.nn.Linear(4, 1)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> result = Auto().fit(model, F.mse_loss, train, val, steps=200)
>>> result.cost <= 1.5, result.lr in Auto().lrs
(True, True)
"""

from ._fit import DEFAULT_LRS, Auto, AutoResult, Racer, fit

__all__ = ["DEFAULT_LRS", "Auto", "AutoResult", "Racer", "fit"]
