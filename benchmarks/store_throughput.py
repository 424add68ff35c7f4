"""Points per second the result store writes: SQLite (WAL file) vs PostgreSQL, the runner's write pattern.

Each run is claimed, written in chunks (one transaction per chunk, as the runner writes one per evaluation)
and finished (last chunk + ``done`` in one transaction); ``--workers`` processes write at once.

    python benchmarks/store_throughput.py                      # SQLite, and a throwaway PostgreSQL server
    python benchmarks/store_throughput.py --postgres postgresql://user@host/db

Without ``--postgres`` a throwaway server is started with tests/_postgres.py (initdb + pg_ctl, Unix socket).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid

from adaptlr.lab.store import Store


def _write(location: str, tag: str, worker: int, runs: int, points: int, chunk: int) -> float:
    """Write ``runs`` runs of ``points`` points; returns the seconds it took."""
    with Store(location) as st:
        t0 = time.perf_counter()
        for r in range(runs):
            c = st.claim(f"bench-{tag}", f"w{worker}", r, "steps=0", {"worker": worker})
            assert c is not None
            pts = [
                {"step": s, "train_loss": 1.0 / s, "lr": 0.1, "eff_lr": 0.1, "metric": 0.5, "wall": s * 1e-3}
                for s in range(1, points + 1)
            ]
            for i in range(0, points - chunk, chunk):
                st.add_points(c, pts[i : i + chunk])
            last = (points - 1) // chunk * chunk
            st.finish_run(c, pts[last:], {"steps_done": points, "wall": 1.0})
        return time.perf_counter() - t0


def _job(args: tuple[str, str, int, int, int, int]) -> float:
    return _write(*args)


def measure(location: str, workers: int, runs: int, points: int, chunk: int) -> float:
    """Points per second over all workers: all points / the slowest worker's time from its first write to its
    last (process start-up is not counted)."""
    tag = uuid.uuid4().hex[:8]
    Store(location).close()  # tables created before the clock starts
    if workers == 1:
        seconds = [_write(location, tag, 0, runs, points, chunk)]
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            seconds = pool.map(_job, [(location, tag, w, runs, points, chunk) for w in range(workers)])
    return workers * runs * points / max(seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--postgres", help="a PostgreSQL URL (default: start a throwaway server)")
    p.add_argument("--runs", type=int, default=20, help="runs per worker")
    p.add_argument("--points", type=int, default=500, help="points per run")
    p.add_argument("--chunk", type=int, default=50, help="points per transaction")
    a = p.parse_args()
    server = None
    pg = a.postgres
    if pg is None:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
        from _postgres import Server, pg_bindir

        bindir = pg_bindir()
        if bindir is None:
            print("no PostgreSQL server binaries: SQLite only")
        else:
            server = Server(bindir)
    try:
        print(f"{a.runs} runs x {a.points} points per worker, {a.chunk} points per transaction")
        print(f"{'workers':>8} {'SQLite pts/s':>14} {'PostgreSQL pts/s':>17} {'PG / SQLite':>12}")
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as d:
                lite = measure(os.path.join(d, "runs.db"), workers, a.runs, a.points, a.chunk)
            if server is not None or pg is not None:
                url = server.database() if server is not None else pg
                post = measure(url, workers, a.runs, a.points, a.chunk)
                print(f"{workers:>8} {lite:>14,.0f} {post:>17,.0f} {post / lite:>12.2f}")
            else:
                print(f"{workers:>8} {lite:>14,.0f} {'-':>17} {'-':>12}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
