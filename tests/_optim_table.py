"""One table of adaptlr's classic optimizers for the registry sweeps: a new optimizer is tested by adding a row.

Each row: the name (shared by adaptlr, torch.optim and adaptlr.reference) and a sampler of random
hyperparameters (from tests/_reference_cases.py).
"""

from __future__ import annotations

from _reference_cases import DRAWS

NAMES = list(DRAWS)
ENGINES = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}
