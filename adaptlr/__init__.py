"""adaptlr: the learning rate of a PyTorch training run, adjusted for you.

Update rules (``adaptlr.Adam``, ...), each a ``torch.optim.Optimizer`` whose math is written once and run by a
fused one-pass engine; schedules; feedback controllers; learning-rate-free methods; and a lab to compare them.
"""

from .optim import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, Optimizer, RAdam, RMSprop

__version__ = "0.1.0"

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "Optimizer", "RAdam", "RMSprop",
           "__version__"]
