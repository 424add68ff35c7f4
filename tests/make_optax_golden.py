"""Write tests/golden/optax_schedules.json: optax's schedule values (float64) for cases that adaptlr matches.

Run with a Python that has optax and jax (not needed by the tests, which only read the JSON):

    python -m venv /tmp/optaxenv && /tmp/optaxenv/bin/pip install optax jax
    /tmp/optaxenv/bin/python tests/make_optax_golden.py

Each case names the optax call (function and keyword arguments), the adaptlr spec that should equal it, and
the values at every step in ``range(steps)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import optax  # noqa: E402

OUT = Path(__file__).parent / "golden" / "optax_schedules.json"


def lin(init, final, steps, begin=0):
    return {"name": "linear", "init": init, "final": final, "steps": steps, "begin": begin}


def cos(init, steps, final=0.0, exponent=1.0):
    return {"name": "cosine", "init": init, "steps": steps, "final": final, "exponent": exponent}


def expo(init, rate, steps, begin=0, staircase=False, final=None):
    return {
        "name": "exponential",
        "init": init,
        "rate": rate,
        "steps": steps,
        "begin": begin,
        "staircase": staircase,
        "final": final,
    }


CASES = [
    ("constant_schedule", {"value": 0.3}, {"name": "constant", "value": 0.3}),
    (
        "linear_schedule",
        {"init_value": 1.0, "end_value": 0.1, "transition_steps": 40, "transition_begin": 10},
        lin(1.0, 0.1, 40, 10),
    ),
    (
        "polynomial_schedule",
        {"init_value": 1.0, "end_value": 0.01, "power": 2.5, "transition_steps": 50, "transition_begin": 5},
        {"name": "polynomial", "init": 1.0, "final": 0.01, "steps": 50, "power": 2.5, "begin": 5},
    ),
    (
        "exponential_decay",
        {"init_value": 1.0, "transition_steps": 7, "decay_rate": 0.8, "transition_begin": 3},
        expo(1.0, 0.8, 7, 3),
    ),
    (
        "exponential_decay",
        {
            "init_value": 1.0,
            "transition_steps": 7,
            "decay_rate": 0.8,
            "transition_begin": 3,
            "staircase": True,
            "end_value": 0.3,
        },
        expo(1.0, 0.8, 7, 3, True, 0.3),
    ),
    (
        "exponential_decay",
        {"init_value": 0.5, "transition_steps": 5, "decay_rate": 1.1, "end_value": 2.0},
        expo(0.5, 1.1, 5, final=2.0),
    ),
    ("cosine_decay_schedule", {"init_value": 0.5, "decay_steps": 60, "alpha": 0.1}, cos(0.5, 60, final=0.05)),
    (
        "cosine_decay_schedule",
        {"init_value": 2.0, "decay_steps": 45, "alpha": 0.0, "exponent": 2.0},
        cos(2.0, 45, exponent=2.0),
    ),
    (
        "warmup_cosine_decay_schedule",
        {"init_value": 0.1, "peak_value": 1.0, "warmup_steps": 10, "decay_steps": 100, "end_value": 0.01},
        {"name": "warmup", "schedule": cos(1.0, 90, final=0.01), "steps": 10, "start": 0.1},
    ),
    (
        "warmup_exponential_decay_schedule",
        {
            "init_value": 0.0,
            "peak_value": 1.0,
            "warmup_steps": 8,
            "transition_steps": 4,
            "decay_rate": 0.7,
            "transition_begin": 2,
            "staircase": True,
            "end_value": 0.05,
        },
        {"name": "warmup", "schedule": expo(1.0, 0.7, 4, 2, True, 0.05), "steps": 8, "start": 0.0},
    ),
    (
        "piecewise_constant_schedule",
        {"init_value": 1.0, "boundaries_and_scales": {"10": 0.5, "30": 0.1}},
        {"name": "piecewise_constant", "values": [1.0, 0.5, 0.05], "boundaries": [10, 30]},
    ),
    (
        "warmup_constant_schedule",
        {"init_value": 0.2, "peak_value": 2.0, "warmup_steps": 15},
        {"name": "warmup", "schedule": {"name": "constant", "value": 2.0}, "steps": 15, "start": 0.2},
    ),
    # SGDR: three cycles of 10, 20 and 40 steps whose peaks halve (optax stays flat after the last one)
    (
        "sgdr_schedule",
        {
            "cosine_kwargs": [
                {"init_value": 0.0, "peak_value": p, "warmup_steps": 0, "decay_steps": n, "end_value": 0.01}
                for p, n in ((1.0, 10), (0.5, 20), (0.25, 40))
            ]
        },
        {"name": "cosine_restarts", "init": 1.0, "period": 10, "mult": 2, "decay": 0.5, "final": 0.01},
        70,
    ),
]


def _optax_schedule(fn: str, kwargs: dict):
    kw = dict(kwargs)
    if "boundaries_and_scales" in kw:
        kw["boundaries_and_scales"] = {int(k): v for k, v in kw["boundaries_and_scales"].items()}
    return getattr(optax, fn)(**kw)


def join_case() -> tuple[str, dict, dict]:
    """optax.join_schedules over three pieces (its own call, as it takes schedules)."""
    return (
        "join_schedules",
        {
            "schedules": [
                ["linear_schedule", {"init_value": 0.0, "end_value": 1.0, "transition_steps": 10}],
                ["cosine_decay_schedule", {"init_value": 1.0, "decay_steps": 30, "alpha": 0.2}],
                ["exponential_decay", {"init_value": 0.2, "transition_steps": 3, "decay_rate": 0.9}],
            ],
            "boundaries": [10, 40],
        },
        {
            "name": "join",
            "schedules": [lin(0.0, 1.0, 10), cos(1.0, 30, final=0.2), expo(0.2, 0.9, 3)],
            "boundaries": [10, 40],
        },
    )


def main(steps: int = 130) -> None:
    out = []
    for fn, kwargs, spec, *n in [*CASES, join_case()]:
        if fn == "join_schedules":
            parts = [_optax_schedule(f, k) for f, k in kwargs["schedules"]]
            sched = optax.join_schedules(parts, kwargs["boundaries"])
        else:
            sched = _optax_schedule(fn, kwargs)
        values = [float(np.asarray(sched(np.int64(t)), dtype=np.float64)) for t in range(n[0] if n else steps)]
        out.append({"optax": fn, "kwargs": kwargs, "adaptlr": spec, "values": values})
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        json.dumps({"source": f"optax {optax.__version__}, jax {jax.__version__}, float64", "cases": out}, indent=1)
        + "\n"
    )
    print(f"wrote {len(out)} cases to {OUT}")


if __name__ == "__main__":
    main()
