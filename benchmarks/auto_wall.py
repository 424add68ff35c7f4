"""Wall time of adaptlr.Auto against one plain run of the same loop, side by side in one process.

For each lab task: the plain run (AdamW + 5% warmup + cosine at lr 1e-3, the task's budget) and the lab method
``auto`` on the same task and seed, alternated ``--repeats`` times in this process (so both see the same machine),
the minimum of each kept; and the plain run at the lr Auto committed, the run a user who had tuned the lr would
make (a step's seconds may depend on the lr: an RBF network's steps cost 1.5 times as much at lr 1 as at 1e-3).
The lab's ``wall`` of a run counts from the end of its first step (one-off costs such as a kernel compiled are
left out of both). Prints the ratios per task, and Auto's own accounting (``AutoResult.wall``: its wall time over
the mean seconds of its steps, and ``cost``: training steps plus validation at its measured cost), both in runs
of the budget.

    python benchmarks/auto_wall.py --tasks char-lm,digits-resnet --seeds 0,1,2 [--method "auto(budget=2.0)"]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="char-lm,charlm-bigval,digits-resnet,mnist-cnn,adding-gru,digits-mlp,linreg")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--method", default="auto", help="the Auto spec to time (e.g. 'auto(budget=2.0)')")
    a = ap.parse_args()

    from adaptlr.lab import tuning_free as TF
    from adaptlr.lab.tasks import get_task
    from adaptlr.lab.training import train
    from adaptlr.lab.workers import limit_threads

    limit_threads(1)
    plain_spec = TF.grid_spec(1e-3)
    print(
        "| task (steps) | plain run, s | Auto, s | Auto / plain (wall) | Auto / plain at Auto's lr | Auto's own wall, runs "
        "| Auto's cost, runs |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in a.tasks.split(","):
        steps = TF.budget_steps(get_task(name))
        rows = []
        for seed in (int(s) for s in a.seeds.split(",")):
            train(name, plain_spec, seed=seed, steps=steps)  # (warm caches: data, kernels)
            plain, auto, own, cost, at_lr = [], [], [], [], []
            for _ in range(a.repeats):
                plain.append(train(name, plain_spec, seed=seed, steps=steps)["wall"])
                out = train(name, a.method, seed=seed, steps=steps)
                auto.append(out["wall"])
                own.append(out["auto_wall"])
                cost.append(out["cost"])
                # (a step's seconds may depend on the lr: a plain run at the lr Auto committed, as a user's tuned run)
                at_lr.append(train(name, TF.grid_spec(out["auto_lr"]), seed=seed, steps=steps)["wall"])
            rows.append((min(plain), min(auto), statistics.median(own), statistics.median(cost), min(at_lr)))
        p, q, r = (statistics.median(row[i] for row in rows) for i in (0, 1, 4))
        own, cost = statistics.median(row[2] for row in rows), statistics.median(row[3] for row in rows)
        print(
            f"| {name} ({steps}) | {p:.2f} | {q:.2f} | {q / p:.2f} | {q / r:.2f} | {own:.2f} | {cost:.2f} |", flush=True
        )


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
