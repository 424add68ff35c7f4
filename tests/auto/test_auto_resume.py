"""adaptlr.Auto.fit(checkpoint_dir=...) (issue 20): a fit killed with SIGKILL in rung 1, in rung 2 or in the
run, started again with the same arguments, ends bit-identical to an uninterrupted one."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import _auto_resume_job as job  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Auto.*:UserWarning")]
JOB = os.path.join(os.path.dirname(__file__), "_auto_resume_job.py")


def _start(folder, out, delay, blind=False):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, JOB, str(folder), str(out), str(delay)] + (["blind"] if blind else [])
    return subprocess.Popen(args, env=env)


def _phase(folder):
    path = folder / "race.pt"
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception:  # (being replaced right now)
        return None
    return state["phase"], len(state["racers"]), state["offset"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    net, result = job.run(str(tmp_path_factory.mktemp("ref")))
    return net.state_dict(), result


@pytest.fixture(scope="module")
def blind_reference(tmp_path_factory):
    net, result = job.run(str(tmp_path_factory.mktemp("ref")), blind=True)
    assert any("raced them on" in w for w in result.warnings)
    return net.state_dict(), result


@pytest.mark.parametrize("phase", ["rung1", "rung2", "look", "run"])
def test_killed_and_started_again_ends_bit_identical(tmp_path, request, phase):
    # "look": killed while the race, blind at rung 2, races its finalists on (a model at its optimum)
    reference = request.getfixturevalue("blind_reference" if phase == "look" else "reference")
    folder, out = tmp_path / "ckpt", tmp_path / "out.pt"
    proc = _start(folder, out, delay=0.01, blind=phase == "look")  # (slow enough that a loaded poller sees each phase)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            seen = _phase(folder)
            if seen is not None and seen[0] == phase and (phase != "rung1" or seen[1] >= 3):
                break
            assert proc.poll() is None, "the job ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail(f"the job never reached {phase}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() and (folder / "race.pt").exists()
    again = _start(folder, out, delay=0.0, blind=phase == "look")
    assert again.wait(timeout=300) == 0
    done = torch.load(out, weights_only=True)
    params, result = reference
    assert done["lr"] == result.lr and done["committed"] == result.committed and done["plan"] == result.plan.as_dict()
    assert done["scores"] == [(r.lr, [list(s) for s in r.scores]) for r in result.racers]
    for k, v in params.items():
        torch.testing.assert_close(done["params"][k], v, rtol=0, atol=0, msg=k)
    assert not folder.exists()  # a finished fit leaves nothing to resume
