"""Real `adaptlr compare` processes sharing one SQLite store: the issue-9 reproduction (two processes started
half a second apart: every run trained exactly once, with all its points), `adaptlr report` reading while runs
go on, and `kill -9` of `compare -j 2` (its workers die with it and write nothing more)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adaptlr.lab.report import summarize
from adaptlr.lab.store import Store

pytestmark = pytest.mark.slow

METHODS = "sgd(lr=0.01),sgd(lr=0.02),sgd(lr=0.03)"


def compare_cmd(store, *extra, methods=METHODS, seeds=2, steps=150):
    return [
        sys.executable,
        "-m",
        "adaptlr.lab",
        "compare",
        "--task",
        "digits-logreg",
        "--methods",
        methods,
        "--seeds",
        str(seeds),
        "--steps",
        str(steps),
        "--no-progress",
        "--no-report",
        "--store",
        str(store),
        *extra,
    ]


def rows(store):
    """{(method, seed): (status, [(step, train_loss, lr, metric, test_loss, val_metric), ...])}."""
    with Store(store, check=False) as st:
        out = {}
        for r in st.runs(status=None):
            key = (r["method"], r["seed"])
            assert key not in out, f"run {key} stored twice"
            pts = [
                (p["step"], p["train_loss"], p["lr"], p["metric"], p["test_loss"], p["val_metric"])
                for p in st.points(r["id"])
            ]
            out[key] = (r["status"], pts)
        return out


def same_points(a, b):
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and x == pytest.approx(y, rel=1e-6))
        for ra, rb in zip(a, b, strict=True)
        for x, y in zip(ra, rb, strict=True)
    )


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_two_compare_processes_on_one_store_train_every_run_once(tmp_path):
    """Issue 9: two `compare` processes started 0.5 s apart on one SQLite store. Every run is done exactly
    once with all its points, the two trained 6 runs between them, and a report read meanwhile only ever sees
    finished runs with all their points. (Equality with a one-process run: test_lab_postgres.)"""
    store = tmp_path / "c.db"
    first = subprocess.Popen(compare_cmd(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    second = subprocess.Popen(compare_cmd(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    try:
        deadline = time.time() + 300
        while time.time() < deadline and (first.poll() is None or second.poll() is None):
            if store.exists():  # `adaptlr report` meanwhile: finished runs only, each complete
                for row in summarize(str(store), "digits-logreg").get("digits-logreg", []):
                    assert row.runs <= 2
                    seen.add((row.method, row.runs))
                for (_, _), (status, pts) in rows(store).items():
                    if status == "done":
                        assert [p[0] for p in pts] == list(range(1, 151))
            time.sleep(0.5)
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    trained = [int(re.search(r"(\d+) runs trained", o).group(1)) for o in (out1, out2)]
    assert sum(trained) == 6, (out1, out2)
    got = rows(store)
    methods = METHODS.split(",")
    assert set(got) == {(m, s) for m in methods for s in range(2)}
    assert all(status == "done" for status, _ in got.values())
    assert seen  # the report did read the store while it was being written
    for _, pts in got.values():  # every run complete: a point per step (log_every 1 at 150 steps)
        assert [p[0] for p in pts] == list(range(1, 151))
    assert got[("sgd(lr=0.01)", 0)][1] != got[("sgd(lr=0.01)", 1)][1]  # the seeds differ (no run copied)


def test_kill_9_of_compare_takes_its_workers_with_it(tmp_path):
    """`kill -9` of `compare -j 2` mid-run: both workers exit at once (parent-death signal), write nothing
    after, and the runs they left are taken over by the next worker without waiting for the lease."""
    store = tmp_path / "runs.db"
    cmd = compare_cmd(
        store, "--jobs", "2", "--eval-every", "20", methods="sgd(lr=0.01),sgd(lr=0.02)", seeds=1, steps=20000
    )
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and parent.poll() is None and len(workers) < 2:
            time.sleep(0.3)
            if not store.exists():
                continue
            with Store(store, check=False) as st:
                workers = {int(r["worker"].rsplit("/", 1)[1]) for r in st.runs(status="running") if st.points(r["id"])}
        assert len(workers) == 2, f"workers never both wrote points ({parent.poll()})"
        assert parent.pid not in workers
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline and not all(pid_gone(p) for p in workers):
            time.sleep(0.1)
        assert all(pid_gone(p) for p in workers), "workers outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for p in workers:
            if not pid_gone(p):
                os.kill(p, signal.SIGKILL)
    # (a worker killed between writing a commit to the WAL and updating its index leaves a committed write that
    # only the next reader's recovery shows: read once so that any such write is in `before`; the workers are gone)
    rows(store)
    before = rows(store)
    time.sleep(1.0)
    assert rows(store) == before  # nothing written after the parent died
    assert sorted(status for status, _ in before.values()) == ["running", "running"]
    with Store(store) as st:  # their processes are gone: the runs can be claimed again at once
        left = st.runs(status="running")
        assert len(left) == 2
        for r in left:
            c = st.claim(r["task"], r["method"], r["seed"], r["budget"], {})
            assert c is not None and c.id > r["id"] and st.points(c) == [] and st.points(r["id"]) == []
