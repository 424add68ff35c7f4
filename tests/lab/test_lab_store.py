"""The result store, on SQLite and on a real PostgreSQL server through the same code: atomic claims, tokens,
leases, ids never reused, complete-or-absent runs, clear errors for stores that cannot be used, old stores
migrated."""

import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from adaptlr.lab import store as store_module
from adaptlr.lab.store import (
    DEFAULT_LEASE,
    POINT_FIELDS,
    Claim,
    LeaseLost,
    RunHeld,
    Slot,
    Store,
    StoreError,
    store_url,
)

pytest_plugins = ["_postgres"]
STORE_PY = store_module.__file__

KEY = ("digits-logreg", "sgd(lr=0.1)", 0, "steps=4,batch=8")
SUMMARY = {"steps_done": 2, "wall": 0.2, "final_metric": 0.5, "best_metric": 0.6, "diverged": False}


def _pts(*steps, **extra):
    return [{"step": s, "wall": 0.1 * s, "train_loss": 1.0 / s, **extra} for s in steps]


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """The same tests on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("pg_url")


def test_store_url():
    assert store_url("runs.db") == "sqlite:///runs.db"
    assert store_url("/x/runs.db") == "sqlite:////x/runs.db"
    assert store_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store_url("postgres://u:pw@h/db") == "postgresql+psycopg://u:pw@h/db"
    assert store_url("postgresql+psycopg://u@/db?host=/s") == "postgresql+psycopg://u@/db?host=/s"  # as workers get it
    with pytest.raises(StoreError, match=r"mysql://u:\*\*\*@h/db: unsupported URL scheme"):
        store_url("mysql://u:secret@h/db")


def test_claim_write_finish_read(location):
    with Store(location) as st:
        c = st.claim(*KEY, {"lr": 0.1})
        assert isinstance(c, Claim) and st.status(*KEY) == "running"
        assert st.claim(*KEY, {}) is None  # held by a live claim
        assert st.runs() == []  # readers see finished runs only
        st.add_points(c, _pts(1, val_metric=0.25, val_loss=2.0, metric=0.5, test_loss=1.5))
        st.finish_run(c, _pts(2), {**SUMMARY, "final_val_metric": 0.4, "best_val_metric": 0.45})
        assert st.claim(*KEY, {}) is None and st.status(*KEY) == "done"
        with pytest.raises(ValueError, match="already done"):
            st.start_run(*KEY, {})
        (run,) = st.runs()
        assert run["config"] == {"lr": 0.1} and run["token"] == c.token
        assert (run["final_metric"], run["best_metric"]) == (0.5, 0.6)
        assert (run["final_val_metric"], run["best_val_metric"]) == (0.4, 0.45)
        pts = st.points(run["id"])
        assert [p["step"] for p in pts] == [1, 2] and set(pts[0]) == set(POINT_FIELDS)
        assert (pts[0]["val_metric"], pts[0]["val_loss"], pts[0]["metric"]) == (0.25, 2.0, 0.5)
        assert pts[1]["val_metric"] is None  # absent keys stored as NULL
        assert st.tasks() == ["digits-logreg"]


def _expire(location, worker, claim):
    """Let ``claim`` lapse now: its holder's last heartbeat, with a lease of a millisecond."""
    with Store(location, worker=worker, lease=1e-3) as st:
        (st.heartbeat_slot if isinstance(claim, Slot) else st.heartbeat)(claim)
    time.sleep(0.05)


def test_the_lease_is_a_store_setting(location):
    with Store(location) as st:
        assert st.lease == DEFAULT_LEASE and st.poll_interval == 1.0
        st.set_lease(5.0)
        with pytest.raises(ValueError, match="Invalid lease"):
            st.set_lease(float("nan"))
    with Store(location) as st:
        assert st.lease == 5.0 and st.poll_interval == 1.0
    with Store(location, lease=2.0) as st:
        assert st.lease == 2.0 and st.poll_interval == 0.5


def test_expired_lease_is_taken_over_and_the_loser_writes_nothing(location):
    """A worker on another machine stops heartbeating: once its lease has expired, the next claim deletes its
    partial rows and trains the run under a new id; the old holder's late writes raise LeaseLost and change
    nothing, and its cleanup cannot touch the new holder's rows."""
    old = Store(location, worker="elsewhere/0/1")
    new = Store(location, worker="here/0/2")
    try:
        a = old.claim(*KEY, {})
        old.add_points(a, _pts(1, 2))
        assert new.claim(*KEY, {}) is None  # its lease runs
        _expire(location, "elsewhere/0/1", a)
        b = new.claim(*KEY, {})
        assert b is not None and b.id > a.id and b.token != a.token
        assert new.points(b.id) == [] and new.points(a.id) == []  # the dead claim's points are gone
        new.add_points(b, _pts(1))
        with pytest.raises(LeaseLost):
            old.add_points(a, _pts(3))
        with pytest.raises(LeaseLost):
            old.finish_run(a, _pts(4), SUMMARY)
        with pytest.raises(LeaseLost):
            old.heartbeat(a)
        assert old.release(a) is False  # the loser's cleanup touches nothing
        new.finish_run(b, _pts(2), SUMMARY)
        (run,) = new.runs()
        assert run["id"] == b.id and [p["step"] for p in new.points(b.id)] == [1, 2]
    finally:
        old.close()
        new.close()


def test_heartbeats_keep_a_claim_alive(location):
    """Lease 1.5 s, heartbeats every 0.25 s from the background thread: the claim outlives two leases; without
    heartbeats it lapses; a lapsed claim taken over is noticed by the thread."""
    with Store(location, lease=1.5) as st, Store(location, worker="elsewhere/0/9") as other:
        c = st.claim(*KEY, {})
        with st.keep_alive(c) as lost:
            time.sleep(3.2)
            assert other.claim(*KEY, {}) is None and not lost.is_set()
        with pytest.raises(RunHeld, match="claimed by"):
            other.start_run(*KEY, {})
        time.sleep(1.7)  # no heartbeat for more than a lease
        assert other.claim(*KEY, {}) is not None
        with st.keep_alive(c) as lost:  # the thread notices the loss at its next beat
            assert lost.wait(10)


def test_a_claim_of_a_dead_local_process_is_taken_over_at_once(tmp_path):
    path = str(tmp_path / "runs.db")
    child = (  # the store package alone (no torch to import): claim a run, then exit without releasing it
        "import importlib.util, os, sys; "
        f"spec = importlib.util.spec_from_file_location('adaptlr_store', {STORE_PY!r}, "
        f"submodule_search_locations=[os.path.dirname({STORE_PY!r})]); "
        "m = importlib.util.module_from_spec(spec); sys.modules['adaptlr_store'] = m; spec.loader.exec_module(m); "
        f"print(m.Store({path!r}).claim('t', 'm', 0, 'b', {{}}).id)"
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Store(path) as st:
        assert st.lease == DEFAULT_LEASE and st.status("t", "m", 0, "b") == "running"
        c = st.claim("t", "m", 0, "b", {})  # its process has exited: no need to wait out the 60 s lease
        assert c is not None and c.id > int(proc.stdout)


def test_ids_are_never_reused(location):
    with Store(location) as st:
        ids = []
        for seed in range(3):
            c = st.claim("t", "m", seed, "b", {})
            ids.append(c.id)
            st.add_points(c, _pts(1))
            assert st.release(c) is True and st.points(c.id) == []
        c = st.claim("t", "m", 0, "b", {})
        assert c.id > max(ids) and ids == sorted(set(ids))


def test_concurrent_claims_give_each_run_to_one_worker(location):
    """16 threads with their own connections race for 4 runs: each run is claimed exactly once."""
    stores = [Store(location, worker=f"w{i}/0/{i}") for i in range(4)]
    got: list[tuple[int, Claim]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        st = stores[i % 4]
        barrier.wait()
        for seed in range(4):
            c = st.claim("t", "m", seed, "b", {})
            if c is not None:
                with lock:
                    got.append((seed, c))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(seed for seed, _ in got) == [0, 1, 2, 3]
        assert len({c.id for _, c in got}) == 4
    finally:
        for st in stores:
            st.close()


def test_trial_slots_are_exact_and_leased(location):
    """`total` slots, each given to one worker; a dead holder's unfinished slot is taken over (with the trial
    it had started), and its late writes raise LeaseLost."""
    a, b = Store(location, worker="elsewhere/0/1"), Store(location, worker="here/0/2")
    try:
        s0, s1 = a.claim_slot("study", 3), b.claim_slot("study", 3)
        assert (s0.number, s1.number, s0.previous_trial) == (0, 1, None)
        got = []
        threads = [threading.Thread(target=lambda: got.append(b.claim_slot("study", 3))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (s2,) = [x for x in got if x is not None]
        assert s2.number == 2 and got.count(None) == 5
        a.set_slot_trial(s0, 7)
        b.finish_slot(s1)
        b.finish_slot(s2)
        assert b.claim_slot("study", 3) is None and not b.slots_done("study", 3)  # slot 0 is still live
        _expire(location, "elsewhere/0/1", s0)
        s0b = b.claim_slot("study", 3)
        assert (s0b.number, s0b.previous_trial) == (0, 7) and s0b.token != s0.token
        with pytest.raises(LeaseLost):
            a.finish_slot(s0)
        b.finish_slot(s0b)
        assert b.slots_done("study", 3) and b.claim_slot("study", 3) is None
        assert a.claim_slot("other", 1).number == 0
    finally:
        a.close()
        b.close()


def test_tune_takes_over_the_trial_of_a_dead_worker(tmp_path):
    """A worker on another machine took trial slot 0, asked Optuna for a trial and died: once its lease has
    run out, `tune` marks that trial failed and still runs the 2 trials asked for."""
    optuna = pytest.importorskip("optuna")
    from adaptlr.lab.search import tune

    store = str(tmp_path / "runs.db")
    with Store(store, worker="elsewhere/0/1", lease=1e-3) as dead:
        study = optuna.create_study(study_name="s", storage=store_url(store), direction="minimize")
        slot = dead.claim_slot("optuna:s", 2)
        dead.set_slot_trial(slot, study.ask().number)
    time.sleep(0.05)
    res = tune(
        "linreg",
        "sgd(lr=?)",
        2,
        sampler="optuna",
        store=store,
        study_name="s",
        steps=20,
        progress=False,
        ranges={"lr": (1e-3, 1e-1, True)},
    )
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert len(res) == 2 and all(math.isfinite(v) for _, v in res)
    with Store(store) as st:
        assert st.slots_done("optuna:s", 2) and len(st.runs("linreg")) == 2


def test_a_failed_chunk_writes_nothing(location):
    from sqlalchemy.exc import IntegrityError

    with Store(location) as st:
        c = st.claim(*KEY, {})
        st.add_points(c, _pts(1))
        with pytest.raises(IntegrityError):
            st.add_points(c, _pts(2, 1))  # repeats step 1: the whole chunk rolls back
        assert [p["step"] for p in st.points(c)] == [1]


def test_a_file_that_is_not_a_database_gives_one_line(tmp_path):
    bad = tmp_path / "runs.db"
    bad.write_bytes(b"this is not a SQLite file at all" * 200)
    with pytest.raises(StoreError) as e:
        Store(bad)
    msg = str(e.value)
    assert msg.startswith(f"store {bad}: ") and "not a SQLite database" in msg and "\n" not in msg
    assert bad.read_bytes() == b"this is not a SQLite file at all" * 200  # untouched


def test_a_damaged_database_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "runs.db"
    with Store(path) as st:
        for seed in range(40):
            c = st.claim("t", "m", seed, "b", {"pad": "x" * 500})
            st.finish_run(c, _pts(*range(1, 30)), SUMMARY)
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    raw = bytearray(path.read_bytes())
    page = 4096
    for off in range(2 * page, len(raw) - page, 3 * page):  # scribble over several b-tree pages
        raw[off : off + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=f"store {path}: .*damaged"):
        Store(path)
    assert path.read_bytes() == bytes(raw)


def test_unwritable_and_foreign_stores(tmp_path):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(StoreError, match=f"store {ro / 'runs.db'}: cannot open"):
            Store(ro / "runs.db")
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)
    foreign = tmp_path / "other.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=r"not an adaptlr result store \(table 'runs' has no column task"):
        Store(foreign)


def test_a_store_from_an_earlier_adaptlr_is_migrated(tmp_path):
    """The schema before claims (no token/lease/validation columns, ids without AUTOINCREMENT): finished runs
    and their points are kept, an unfinished run is redone under a new id."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE runs (id INTEGER PRIMARY KEY, task TEXT NOT NULL, method TEXT NOT NULL,
            seed INTEGER NOT NULL, budget TEXT NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
            started REAL NOT NULL, finished REAL, steps_done INTEGER, wall REAL, final_metric REAL,
            best_metric REAL, diverged INTEGER, UNIQUE (task, method, seed, budget));
        CREATE TABLE points (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL, train_loss REAL, lr REAL, eff_lr REAL, metric REAL, test_loss REAL,
            wall REAL NOT NULL, PRIMARY KEY (run_id, step));
        """
    )
    cfg = json.dumps({"higher_is_better": True})
    con.execute("INSERT INTO runs VALUES (1,'t','m',0,'b',?,'done',0,1,2,0.2,0.7,0.8,0)", (cfg,))
    con.execute("INSERT INTO runs VALUES (2,'t','m',1,'b',?,'running',0,NULL,NULL,NULL,NULL,NULL,NULL)", (cfg,))
    con.executemany("INSERT INTO points VALUES (?,?,0.5,0.1,0.1,NULL,NULL,?)", [(1, 1, 0.1), (1, 2, 0.2), (2, 1, 0.1)])
    con.commit()
    con.close()
    with Store(path) as st:
        (run,) = st.runs()
        assert (run["id"], run["final_metric"], run["final_val_metric"]) == (1, 0.7, None)
        assert [p["step"] for p in st.points(1)] == [1, 2] and st.points(1)[0]["val_metric"] is None
        c = st.claim("t", "m", 1, "b", {})  # the old unfinished run has no lease: taken over
        assert c is not None and c.id == 3 and st.points(2) == []
        st.release(c)
        assert st.claim("t", "m", 2, "b", {}).id == 4  # AUTOINCREMENT now: 3 is not given out again
    sql = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE name='runs'").fetchone()[0]
    assert "AUTOINCREMENT" in sql


def test_postgres_errors_are_one_line(pg_server):
    with pytest.raises(StoreError) as e:
        Store(pg_server.url("no_such_db"))
    msg = str(e.value)
    assert msg.startswith("store postgresql://adaptlr@/no_such_db") and "cannot connect" in msg
    assert "no_such_db" in msg and "\n" not in msg


def test_wal_mode_and_lazy_import(tmp_path):
    with Store(tmp_path / "runs.db"):
        pass
    assert sqlite3.connect(tmp_path / "runs.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    code = "import sys, adaptlr, adaptlr.lab; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_search_ranks_by_the_validation_metric(tmp_path):
    from adaptlr.lab.search import objective_value

    with Store(tmp_path / "runs.db") as st:
        for seed, (val, test, div) in enumerate([(0.7, 0.9, False), (0.5, 0.1, False), (0.6, 0.2, False)]):
            c = st.claim("t", "a", seed, "b", {})
            st.finish_run(c, _pts(1), {**SUMMARY, "final_val_metric": val, "final_metric": test, "diverged": div})
        assert objective_value(st, "t", "a", "b") == pytest.approx(0.6)  # median of validation, not test
        c = st.claim("t", "d", 0, "b", {})
        st.finish_run(c, _pts(1), {**SUMMARY, "final_val_metric": 0.99, "diverged": True})
        assert math.isnan(objective_value(st, "t", "d", "b"))  # diverged: never the best
        assert math.isnan(objective_value(st, "t", "absent", "b"))
        c = st.claim("t", "noval", 0, "b", {})
        st.finish_run(c, _pts(1), {**SUMMARY, "final_metric": 0.3})
        with pytest.warns(UserWarning, match="no validation metric"):
            assert objective_value(st, "t", "noval", "b") == 0.3


def test_workers_with_their_own_stores_share_the_study_and_its_slots(tmp_path):
    """`--storage` shared, result stores not: the trial slots live beside the study, so the study still gets
    exactly the trials asked for; each worker's store holds the runs it trained."""
    optuna = pytest.importorskip("optuna")
    from adaptlr.lab.search import tune

    storage = str(tmp_path / "study.db")
    kw = dict(sampler="optuna", storage=storage, study_name="s", steps=20, progress=False)
    first = tune("linreg", "sgd(lr=?)", 3, store=str(tmp_path / "a.db"), **kw)
    second = tune("linreg", "sgd(lr=?)", 3, store=str(tmp_path / "b.db"), **kw)
    assert len(optuna.load_study(study_name="s", storage=store_url(storage)).get_trials()) == 3
    assert first == second and len(first) == 3  # both report the whole study
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        assert len(a.runs("linreg")) == 3 and b.runs("linreg") == []
