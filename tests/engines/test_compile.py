"""torch.compile of a step (foreach engine): a learning rate that changes every step does not recompile."""

from __future__ import annotations

import pytest
import torch

import adaptlr


@pytest.mark.parametrize("name", ["Adam", "SGD", "NAdam"])
def test_compiled_step_matches_eager_and_compiles_twice(name):
    torch.manual_seed(0)
    compilations = []

    def backend(gm, example_inputs):  # counts graphs; runs them eagerly (no inductor build in the test)
        compilations.append(gm)
        return gm.forward

    torch._dynamo.reset()
    results = []
    for compiled in (False, True):
        torch.manual_seed(42)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        lr = torch.tensor(0.01)
        kwargs = dict(momentum=0.9) if name == "SGD" else {}
        opt = getattr(adaptlr, name)(model.parameters(), lr=lr, foreach=True, **kwargs)
        step = torch.compile(opt.step, backend=backend) if compiled else opt.step
        x, y = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)), torch.zeros(16, 1)
        for i in range(6):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            lr.fill_(0.01 / (i + 1))
            step()
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # one graph for the first step (state creation), one for every later step
    assert 1 <= len(compilations) <= 3, f"{len(compilations)} compilations for 6 steps"
