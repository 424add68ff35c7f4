"""Warmup + cosine decay (a schedule) x reduce-on-plateau (a controller), on a real training run.

Makes docs/composed_schedule.png:  python examples/composed_schedule.py [out.png]

The schedule gives the lr of every step; the plateau controller watches the validation loss once per epoch
and cuts its factor when the loss stops improving; the optimizer uses schedule(step) x factor.
torch's SequentialLR / ChainedScheduler cannot chain ReduceLROnPlateau with a warmup and a cosine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from adaptlr import schedules as S
from adaptlr.controllers import ReduceOnPlateau
from adaptlr.optim import SGD

STEPS_PER_EPOCH, EPOCHS = 20, 60
PICTURE = Path(__file__).resolve().parents[1] / "docs" / "composed_schedule.png"


def run() -> dict[str, list[float]]:
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    y = torch.tanh(x @ w) + 0.3 * torch.randn(400, 1, generator=g)  # noisy: the val loss plateaus
    yv = torch.tanh(xv @ w) + 0.3 * torch.randn(400, 1, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    total = STEPS_PER_EPOCH * EPOCHS
    schedule = S.warmup(S.cosine(0.05, steps=total - 100, final=1e-3), steps=100)
    opt = SGD(model.parameters(), lr=schedule, momentum=0.9, foreach=True)
    plateau = ReduceOnPlateau(opt, patience=4, factor=0.5, threshold=1e-2, cooldown=4)
    log: dict[str, list[float]] = {"schedule": [], "lr": [], "epoch_step": [], "val": [], "cut": []}
    for epoch in range(EPOCHS):
        perm = torch.randperm(400, generator=g)
        for i in range(STEPS_PER_EPOCH):
            idx = perm[i * 20 : (i + 1) * 20]
            step = epoch * STEPS_PER_EPOCH + i
            log["schedule"].append(schedule(step))
            log["lr"].append(opt.current_lr())
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            opt.step()
        with torch.no_grad():
            val = torch.nn.functional.mse_loss(model(xv), yv).item()
        log["epoch_step"].append((epoch + 1) * STEPS_PER_EPOCH)
        log["val"].append(val)
        if plateau.observe(val):
            log["cut"].append((epoch + 1) * STEPS_PER_EPOCH)
    return log


def main(path: str | Path = PICTURE) -> Path:
    from matplotlib.figure import Figure

    log = run()
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    steps = range(len(log["lr"]))
    ax.plot(steps, log["schedule"], "--", color="tab:gray", label="schedule: warmup(cosine(0.05, ...), 100)")
    ax.plot(steps, log["lr"], color="tab:blue", lw=2, label="effective lr = schedule x plateau factor")
    for i, s in enumerate(log["cut"]):
        label = "ReduceOnPlateau cut (x0.5)" if i == 0 else None
        ax.axvline(s, color="tab:red", alpha=0.3, lw=1, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax2 = ax.twinx()
    ax2.plot(log["epoch_step"], log["val"], "o-", ms=3, color="tab:orange", label="validation loss")
    ax2.set_ylabel("validation loss")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize="small", loc="upper right")
    ax.set_title("adaptlr: warmup + cosine (schedule) x reduce-on-plateau (controller)")
    ax.grid(alpha=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
