"""benchmarks/auto_device.py (the script a session with a GPU runs) measures a plain run and Auto.fit on a lab
task's model on the given device; on CPU it runs end to end without the memory column."""

import json
import math

import pytest
import torch
from _benchmarks import load_benchmark

pytestmark = pytest.mark.filterwarnings("ignore:Auto.*:UserWarning")


@pytest.fixture
def bench():
    return load_benchmark("auto_device")


def test_it_times_a_plain_run_and_auto_on_the_device_and_writes_them(bench, tmp_path, capsys):
    out = tmp_path / "row.json"
    row = bench.main(["--device", "cpu", "--task", "linreg", "--steps", "60", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(row))
    assert row["steps"] == 60 and row["device"] == "cpu"
    assert row["plain"]["seconds"] > 0 and row["auto"]["seconds"] > 0
    assert row["plain"]["peak_mib"] is None and row["auto"]["peak_mib"] is None  # (CUDA only)
    assert row["auto"]["committed"] in ("final", "watch", "branch", "start")
    assert (
        math.isfinite(row["auto"]["own_wall_runs"]) and row["auto"]["cost_runs"] > 1.0
    )  # (the race costs steps beyond the run)
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| linreg")]
    assert len(table) == 1 and "| cpu |" in table[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_cuda_without_a_device_is_refused_in_one_line(bench):
    with pytest.raises(SystemExit, match="no CUDA device"):
        bench.main(["--device", "cuda", "--task", "linreg", "--steps", "10"])
