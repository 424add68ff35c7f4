"""Wall time of adaptlr.Auto against one plain run of the same loop, side by side in one process.

For each lab task: the plain run (AdamW + 5% warmup + cosine at lr 1e-3, the task's budget) and the lab method
``auto`` on the same task and seed, alternated ``--repeats`` times in this process (so both see the same machine),
the minimum of each kept. The lab's ``wall`` of a run counts from the end of its first step (one-off costs such as
a kernel compiled are left out of both). Prints the ratio per task, and Auto's own accounting (``AutoResult.wall``:
its wall time over the mean seconds of its steps, and ``cost``: training steps plus validation at its measured
cost), both in runs of the budget.

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
    print("| task (steps) | plain run, s | Auto, s | Auto / plain (wall) | Auto's own wall, runs | Auto's cost, runs |")
    print("|---|---|---|---|---|---|")
    for name in a.tasks.split(","):
        steps = TF.budget_steps(get_task(name))
        rows = []
        for seed in (int(s) for s in a.seeds.split(",")):
            train(name, plain_spec, seed=seed, steps=steps)  # (warm caches: data, kernels)
            plain, auto, own, cost = [], [], [], []
            for _ in range(a.repeats):
                plain.append(train(name, plain_spec, seed=seed, steps=steps)["wall"])
                out = train(name, a.method, seed=seed, steps=steps)
                auto.append(out["wall"])
                own.append(out["auto_wall"])
                cost.append(out["cost"])
            rows.append((min(plain), min(auto), statistics.median(own), statistics.median(cost)))
        p, q = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        own, cost = statistics.median(r[2] for r in rows), statistics.median(r[3] for r in rows)
        print(f"| {name} ({steps}) | {p:.2f} | {q:.2f} | {q / p:.2f} | {own:.2f} | {cost:.2f} |", flush=True)


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
