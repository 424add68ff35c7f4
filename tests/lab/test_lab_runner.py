"""The runner and the store: determinism, resume after a kill (no duplicate or lost rows), extension,
clean interruption, transactional writes."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import torch

from adaptlr.lab import compare, train
from adaptlr.lab import data as D
from adaptlr.lab.store import Store
from adaptlr.lab.tasks import Task, register_task
from adaptlr.lab.training import Interrupted

KW = dict(steps=40, batch_size=32, eval_every=5)


def _points(store_path):
    """(task, method, seed) -> [(step, train_loss, lr, eff_lr, metric, test_loss)], read with plain sqlite3."""
    con = sqlite3.connect(store_path)
    rows = con.execute(
        "SELECT r.task, r.method, r.seed, r.status, p.step, p.train_loss, p.lr, p.eff_lr, p.metric, "
        "p.test_loss FROM runs r LEFT JOIN points p ON p.run_id = r.id ORDER BY r.id, p.step"
    ).fetchall()
    con.close()
    out = {}
    for task, method, seed, status, *pt in rows:
        out.setdefault((task, method, seed, status), []).append(tuple(pt))
    return out


def _same(a, b):
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and x == pytest.approx(y, rel=1e-6))
        for ra, rb in zip(a, b)
        for x, y in zip(ra, rb)
    )


def test_train_is_deterministic_and_logs_every_point():
    a = train("digits-logreg", "adam(lr=0.01) + cosine(warmup=0.1)", seed=1, **KW)
    b = train("digits-logreg", "adam(lr=0.01) + cosine(warmup=0.1)", seed=1, **KW)
    c = train("digits-logreg", "adam(lr=0.01) + cosine(warmup=0.1)", seed=2, **KW)
    strip = lambda r: [{k: v for k, v in p.items() if k != "wall"} for p in r["points"]]  # noqa: E731
    assert strip(a) == strip(b) and strip(a) != strip(c)
    assert [p["step"] for p in a["points"]] == list(range(1, 41))
    assert [p["step"] for p in a["points"] if p["metric"] is not None] == list(range(5, 41, 5))
    assert a["final_metric"] == a["points"][-1]["metric"] and a["final_metric"] > 0.5
    # warmup over 4 steps: the point of step k logs the lr that step k used
    assert [p["lr"] for p in a["points"][:5]] == pytest.approx([0.0025, 0.004375, 0.00625, 0.008125, 0.01])


def test_divergence_stops_the_run():
    r = train("linreg", "sgd(lr=10.0)", seed=0, steps=50, batch_size=16)
    assert r["diverged"] and r["steps_done"] < 50


def test_resume_after_kill_has_no_duplicate_or_lost_rows(tmp_path):
    store = str(tmp_path / "runs.db")
    child = textwrap.dedent(f"""
        import os, signal
        from adaptlr.lab.jobs import Job, run_job
        jobs = [Job("digits-logreg", "sgd(lr=0.5)", s, 40, 32, 5) for s in (0, 1)]
        run_job(jobs[0], {store!r})
        def progress(step, total, loss):
            if step == 23:
                os.kill(os.getpid(), signal.SIGKILL)
        run_job(jobs[1], {store!r}, progress)
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    before = _points(store)
    done0 = before[("digits-logreg", "sgd(lr=0.5)", 0, "done")]
    partial = before[("digits-logreg", "sgd(lr=0.5)", 1, "running")]
    assert len(done0) == 40
    assert [p[0] for p in partial] == list(range(1, 21))  # the chunks committed before the kill, no more

    res = compare("digits-logreg", ["sgd(lr=0.5)"], 3, store=store, progress=False, **KW)
    assert [j.seed for j in res.skipped] == [0] and [j.seed for j in res.done] == [1, 2]
    after = _points(store)
    assert set(after) == {("digits-logreg", "sgd(lr=0.5)", s, "done") for s in range(3)}
    assert after[("digits-logreg", "sgd(lr=0.5)", 0, "done")] == done0  # the finished run was not touched
    for s in range(3):
        assert [p[0] for p in after[("digits-logreg", "sgd(lr=0.5)", s, "done")]] == list(range(1, 41))

    fresh = str(tmp_path / "fresh.db")
    compare("digits-logreg", ["sgd(lr=0.5)"], 3, store=fresh, progress=False, **KW)
    ref = _points(fresh)
    for key, pts in after.items():
        assert _same(pts, ref[key])  # the same rows as an uninterrupted comparison


def test_extend_with_more_seeds_and_methods_redoes_nothing(tmp_path):
    store = str(tmp_path / "runs.db")
    kw = dict(steps=10, batch_size=32, eval_every=5, store=store, progress=False)
    r1 = compare("digits-logreg", ["sgd(lr=0.5)"], 2, **kw)
    r2 = compare("digits-logreg", ["sgd(lr=0.5)", "adam(lr=0.01)"], 3, **kw)
    assert len(r1.done) == 2 and len(r2.skipped) == 2 and len(r2.done) == 4
    with Store(store) as st:
        assert len(st.runs()) == 6
        assert all(len(st.points(r["id"])) == 10 for r in st.runs())
    # a different budget is a different run
    r3 = compare("digits-logreg", ["sgd(lr=0.5)"], 1, **{**kw, "steps": 20})
    assert len(r3.done) == 1


_calls = {"n": 0}


def _interrupting_loss(out, y):
    _calls["n"] += torch.is_grad_enabled()  # training steps only, not evaluations
    if _calls["n"] == 17:  # in the second run (10 steps each)
        raise KeyboardInterrupt
    return torch.nn.functional.mse_loss(out, y)


def test_ctrl_c_keeps_finished_runs_and_leaves_no_partial_rows(tmp_path):
    register_task(
        Task(
            "lab-test-interrupt",
            lambda: torch.nn.Linear(10, 1),
            lambda: D.make_linreg(n=200, n_test=50),
            _interrupting_loss,
            "mse",
            steps=10,
            batch_size=16,
            eval_every=2,
        ),
        replace=True,
    )
    store = str(tmp_path / "runs.db")
    _calls["n"] = 0
    res = compare("lab-test-interrupt", ["sgd(lr=0.01)"], 3, store=store, progress=False)
    assert res.interrupted and [j.seed for j in res.done] == [0]
    assert set(_points(store)) == {("lab-test-interrupt", "sgd(lr=0.01)", 0, "done")}
    res = compare("lab-test-interrupt", ["sgd(lr=0.01)"], 3, store=store, progress=False)
    assert not res.interrupted and [j.seed for j in res.done] == [1, 2]


def test_stop_callback_interrupts_train():
    with pytest.raises(Interrupted):
        train("linreg", "sgd(lr=0.01)", steps=10, stop=lambda: True)


def test_a_chunk_is_all_or_nothing(tmp_path):
    st = Store(tmp_path / "runs.db")
    rid = st.start_run("t", "m", 0, "b", {})
    st.add_points(rid, [{"step": 1, "wall": 0.1}])
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):  # the second point repeats step 1: the whole chunk is rolled back
        st.add_points(rid, [{"step": 2, "wall": 0.2}, {"step": 1, "wall": 0.3}])
    assert [p["step"] for p in st.points(rid)] == [1]
    st.finish_run(rid, [{"step": 2, "wall": 0.2}], {"steps_done": 2, "wall": 0.2})
    with pytest.raises(ValueError, match="already done"):
        st.start_run("t", "m", 0, "b", {})
    st.close()


def test_parallel_compare_and_ctrl_c_in_a_subprocess(tmp_path):
    """`adaptlr compare --jobs 2`, interrupted with SIGINT once a run has finished: exit 130, finished runs kept,
    nothing half-written; the same command then completes the rest."""
    store = str(tmp_path / "runs.db")
    cmd = [
        sys.executable,
        "-m",
        "adaptlr.lab",
        "compare",
        "--task",
        "linreg",
        "--methods",
        "sgd(lr=0.05),adam(lr=0.05)",
        "--seeds",
        "2",
        "--steps",
        "150",
        "--jobs",
        "2",
        "--store",
        store,
        "--no-progress",
        "--no-report",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if os.path.exists(store):
                try:
                    con = sqlite3.connect(store, timeout=5)
                    n = con.execute("SELECT count(*) FROM runs WHERE status='done'").fetchone()[0]
                    con.close()
                except sqlite3.OperationalError:
                    n = 0
                if n >= 1:
                    proc.send_signal(signal.SIGINT)
                    break
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = _points(store)
    done = [k for k in rows if k[3] == "done"]
    assert len(done) >= 1
    if proc.returncode == 130:  # interrupted before everything finished (the usual case)
        assert "interrupted" in out + err
        assert all(k[3] == "done" for k in rows), rows.keys()  # no run left half-written
    else:
        assert proc.returncode == 0, err
    for k in done:
        assert [p[0] for p in rows[k]] == list(range(1, 151))
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{len(done)} already in" in res.stdout
    assert len(_points(store)) == 4
