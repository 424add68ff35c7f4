"""The lab on a real PostgreSQL server (a throwaway cluster, tests/_postgres.py): three `adaptlr compare`
workers share one store while one of them is SIGKILLed mid-run, and two `adaptlr tune` workers share one
Optuna study."""

import math
import re
import signal
import subprocess
import sys
import time

import pytest
from test_lab_concurrency import compare_cmd, rows, same_points

from adaptlr.lab.runner import compare
from adaptlr.lab.store import Store, store_url

pytestmark = pytest.mark.slow
pytest_plugins = ["_postgres"]

METHODS = "sgd(lr=0.01),sgd(lr=0.05),adam(lr=0.01)"
STEPS = 200


def test_three_workers_one_killed_lose_nothing(pg_url, tmp_path):
    with Store(pg_url) as st:
        st.set_lease(3.0)
    cmd = compare_cmd(pg_url, "--eval-every", "20", methods=METHODS, seeds=2, steps=STEPS)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    victim = procs[1]
    killed_run = None
    try:
        deadline = time.time() + 240
        with Store(pg_url) as st:
            while time.time() < deadline and killed_run is None and victim.poll() is None:
                for r in st.runs(status="running"):
                    if r["worker"].endswith(f"/{victim.pid}") and len(st.points(r["id"])) >= 2:
                        victim.send_signal(signal.SIGKILL)  # mid-run: some chunks written, not all
                        killed_run = (r["method"], r["seed"], r["id"])
                        break
                time.sleep(0.1)
        assert killed_run is not None, "the victim was never caught mid-run"
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert victim.returncode == -signal.SIGKILL
    for p, (out, err) in zip(procs, outs, strict=True):
        if p is not victim:
            assert p.returncode == 0, err
    methods = METHODS.split(",")
    got = rows(pg_url)
    assert set(got) == {(m, s) for m in methods for s in range(2)}  # every run present exactly once
    assert all(status == "done" for status, _ in got.values())
    with Store(pg_url) as st:
        redone = [r for r in st.runs() if (r["method"], r["seed"]) == killed_run[:2]]
        assert redone[0]["id"] > killed_run[2] and not redone[0]["worker"].endswith(f"/{victim.pid}")
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
