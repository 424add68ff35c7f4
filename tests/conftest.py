"""Test-wide settings: one torch thread and one Numba thread per pytest worker (the suite runs with -n 2 on 2
cores; tiny tensors only contend for intra-op threads, up to 100x slower on a loaded machine)."""

from __future__ import annotations

import os
import sys

import pytest
import torch

torch.set_num_threads(1)
# the tests' shared helpers (_optim_table, _integrations, _postgres, ...) live in this folder, the tests in
# folders by layer below it
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="session")
def _one_numba_thread():
    if os.environ.get("ADAPTLR_TEST_THREADS") is None:
        import numba

        numba.set_num_threads(1)
    yield
