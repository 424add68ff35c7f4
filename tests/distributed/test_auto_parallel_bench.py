"""benchmarks/auto_parallel.py runs end to end (2 real gloo processes, a short budget) and reports every phase."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_auto_parallel_benchmark_reports_measured_and_projected_groups(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "auto_parallel.py"),
            "--steps",
            "60",
            "--repeats",
            "1",
            "--out",
            str(tmp_path / "rows.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "groups" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["1 (measured)", "2 (measured)", "4 (projected)", "8 (projected)"]
    for r in rows:  # every phase and the ratio are positive numbers
        assert all(float(c) > 0 for c in r.split("|")[2:-1])
    assert (tmp_path / "rows.json").exists()
