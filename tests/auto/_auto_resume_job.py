"""A fit with a checkpoint folder, run as its own process by tests/test_auto_resume.py (which SIGKILLs it)."""

import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from adaptlr.auto import Auto


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(704, 8, generator=g)
    y = torch.tanh(x @ torch.randn(8, 1, generator=g)) + 0.05 * torch.randn(704, 1, generator=g)
    train = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)]
    val = [(x[i : i + 64], y[i : i + 64]) for i in range(512, 704, 64)]
    return train, val


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(0.2), nn.Linear(32, 1))  # (dropout: the RNG)


def at_its_optimum():
    """A linear model at the optimum of noisy data: the race cannot tell its finalists from the start and races
    them on (the "look" phase)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1, generator=g)
    x = torch.randn(704, 8, generator=g)
    y = x @ w + torch.randn(704, 1, generator=g)
    net = nn.Linear(8, 1)
    with torch.no_grad():
        net.weight.copy_(w.T)
        net.bias.zero_()
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 512, 32)], [(x[512:], y[512:])], net


def run(checkpoint_dir, delay=0.0, blind=False):
    train, val = problem()
    net = model()
    if blind:
        train, val, net = at_its_optimum()

    def step(m, batch):
        time.sleep(delay)
        return F.mse_loss(m(batch[0]), batch[1])

    torch.manual_seed(1)
    auto = Auto(max_budget=2.0 if blind else None)
    result = auto.fit(net, train, val, steps=150, step_fn=step, val_cost=1.0, checkpoint_dir=checkpoint_dir)
    return net, result


if __name__ == "__main__":
    folder, out = sys.argv[1], sys.argv[2]
    net, result = run(folder, delay=float(sys.argv[3]), blind=sys.argv[4:] == ["blind"])
    scores = [(r.lr, [list(s) for s in r.scores]) for r in result.racers]
    done = {"params": net.state_dict(), "lr": result.lr, "committed": result.committed, "scores": scores}
    torch.save({**done, "plan": result.plan.as_dict()}, out)
