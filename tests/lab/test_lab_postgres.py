"""The lab on a real PostgreSQL server (a throwaway cluster, tests/_postgres.py): three `adaptlr compare`
workers share one store while one of them is SIGKILLed mid-run, and two `adaptlr tune` workers share one
Optuna study."""

import math
import re
import signal
import subprocess
import sys

import pytest
from test_lab_concurrency import compare_cmd, rows, same_points

from adaptlr.lab import compare
from adaptlr.lab.store import Store, store_url

pytestmark = pytest.mark.slow
pytest_plugins = ["_postgres"]

METHODS = "sgd(lr=0.01),sgd(lr=0.05),adam(lr=0.01)"
STEPS = 200


VICTIM = """
import os, signal
from adaptlr.lab import store
from adaptlr.lab.store import claims

claims.worker_id = lambda: "victim-host/0/1"  # as if on another machine: its claim can only expire
_add, _chunks = store.Store.add_points, []


def add_points(self, claim, points):
    _add(self, claim, points)
    _chunks.append(claim)
    if len(_chunks) == 3:  # a run writes 9 chunks and a last one: this is mid-run
        with open("killed.txt", "w") as f:
            f.write(f"{claim.method}\\t{claim.seed}\\t{claim.id}")
        os.kill(os.getpid(), signal.SIGKILL)


store.Store.add_points = add_points
"""


def test_three_workers_one_killed_lose_nothing(pg_url, tmp_path):
    """Three `compare` workers on one PostgreSQL store; one (as if on another machine) is SIGKILLed in the
    middle of a run. Its claim expires (lease 3 s), another worker redoes the run: every run is present
    exactly once, nothing half-written is left, and the results equal a one-worker SQLite run."""
    with Store(pg_url) as st:
        st.set_lease(3.0)
    cmd = compare_cmd(pg_url, "--eval-every", "20", methods=METHODS, seeds=2, steps=STEPS)
    (tmp_path / "victim_hook.py").write_text(VICTIM)
    procs = [
        subprocess.Popen(
            cmd + (["--import", "victim_hook"] if i == 1 else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path if i == 1 else None,
        )
        for i in range(3)
    ]
    victim = procs[1]
    try:
        outs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert victim.returncode == -signal.SIGKILL, f"the victim was not killed mid-run: {outs[1]}"
    for p, (_, err) in zip(procs, outs, strict=True):
        if p is not victim:
            assert p.returncode == 0, err
    method, seed, old_id = (tmp_path / "killed.txt").read_text().split("\t")
    killed_run = (method, int(seed), int(old_id))
    methods = METHODS.split(",")
    got = rows(pg_url)
    assert set(got) == {(m, s) for m in methods for s in range(2)}  # every run present exactly once
    assert all(status == "done" for status, _ in got.values())
    with Store(pg_url) as st:
        redone = [r for r in st.runs() if (r["method"], r["seed"]) == killed_run[:2]]
        assert redone[0]["id"] > killed_run[2] and redone[0]["worker"] != "victim-host/0/1"
        assert st.points(killed_run[2]) == []  # no half-written rows left behind
        sa = pytest.importorskip("sqlalchemy")
        with st.engine.connect() as c:
            orphans = c.execute(sa.text("SELECT count(*) FROM points WHERE run_id NOT IN (SELECT id FROM runs)"))
            assert orphans.scalar() == 0
    ref_store = tmp_path / "ref.db"
    compare("digits-logreg", methods, 2, store=str(ref_store), steps=STEPS, eval_every=20, progress=False)
    ref = rows(ref_store)
    for key, (_, pts) in got.items():
        assert pts[-1][0] == STEPS and [p[0] for p in pts] == [p[0] for p in ref[key][1]]
        assert same_points(pts, ref[key][1]), key  # equal to a one-worker SQLite run


def test_two_tune_workers_share_one_study(pg_url):
    optuna = pytest.importorskip("optuna")
    trials = 4
    cmd = [
        sys.executable,
        "-m",
        "adaptlr.lab",
        "tune",
        "--task",
        "linreg",
        "--method",
        "sgd(lr=?)",
        "--trials",
        str(trials),
        "--sampler",
        "optuna",
        "--range",
        "lr=0.001:0.1",
        "--steps",
        "20",
        "--store",
        pg_url,
        "--no-progress",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    per_worker = [len(re.findall(r"^trial ", out, flags=re.M)) for out, _ in outs]
    assert sum(per_worker) == trials  # each trial run by exactly one worker
    (summary,) = optuna.get_all_study_summaries(store_url(pg_url))
    study = optuna.load_study(study_name=summary.study_name, storage=store_url(pg_url))
    tr = study.get_trials()
    assert sorted(t.number for t in tr) == list(range(trials))  # trial count exact
    specs = [t.user_attrs["spec"] for t in tr]
    assert len(set(specs)) == trials  # no duplicate trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in tr)
    with Store(pg_url) as st:
        runs = {r["method"]: r for r in st.runs("linreg")}
        assert sorted(runs) == sorted(specs)  # each trial is one ordinary run in the shared store
        for t in tr:  # the study saw the validation metric, not the test metric
            r = runs[t.user_attrs["spec"]]
            assert r["final_val_metric"] is not None and math.isclose(t.value, r["final_val_metric"])
            assert r["final_val_metric"] != r["final_metric"]
