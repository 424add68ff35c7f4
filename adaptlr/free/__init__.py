"""Learning-rate-free optimizers: they estimate their step size themselves.

Each is a rule on adaptlr's engines (a reduction phase for the global sums, then the update phase), with one
estimate per param group on request (``per_group_d=True``), sums all-reduced over a ``process_group`` when the
parameters are sharded, and an ``effective_lr(group_index)`` readout.
"""

from .prodigy import Prodigy

__all__ = ["Prodigy"]
