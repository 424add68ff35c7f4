"""The lab's ``auto`` runs when Auto rolls a diverged run back (``on_step`` goes back to an earlier step): the
steps trained again were logged twice, the store refused the duplicate points, the run was released and
``compare`` returned without it, silently (out/auto_v6.db: holdout-diabetes-outliers, auto(budget=2.0), seed
2, id 336 inserted and deleted). Whether Auto rolls back depends on its measured costs, so the run went
missing when another process shared the CPUs. Here Auto's ``fit`` is replaced by one that rolls back."""

from types import SimpleNamespace

import pytest

import adaptlr.auto
from adaptlr.lab.comparison import compare
from adaptlr.lab.store import Store

STEPS, DIVERGED_AT, MARK = 60, 45, 25  # the first go reaches step 45, rolled back to 25: steps 26..45 again


def rolling_back_fit(self, model, loss_fn, train, val, steps, *, score_fn=None, on_step=None, **kw):
    """Auto's fit as far as the lab sees it: steps 1..45 at lr 0.1, then 26..60 again at lr 0.01."""
    for step in range(1, DIVERGED_AT + 1):
        on_step(step, 100.0, 0.1, step > 10)  # (steps 1..10: the race, replayed)
    for step in range(MARK + 1, steps + 1):
        on_step(step, 1.0, 0.01, True)
    racer = SimpleNamespace(lr=0.01, diverged=False)
    return SimpleNamespace(
        steps=steps, lr=0.01, racers=[racer], warm_seconds=0.0, cost=1.0, committed="final", lrs=[0.1, 0.01],
        wall=0.0, warnings=["rolled back"],
    )  # fmt: skip


def test_a_rolled_back_auto_run_is_stored_once_with_the_steps_of_its_second_go(tmp_path, monkeypatch):
    monkeypatch.setattr(adaptlr.auto.Auto, "fit", rolling_back_fit)
    store = str(tmp_path / "r.db")
    res = compare("linreg", ["auto"], [0, 1], store=store, steps=STEPS, progress=False)
    assert res.failed == [] and len(res.done) == 2
    with Store(store) as st:
        runs = st.runs(status=None)
        assert [(r["seed"], r["status"], r["steps_done"]) for r in runs] == [(0, "done", STEPS), (1, "done", STEPS)]
        for r in runs:
            pts = st.points(r["id"])
            steps = [p["step"] for p in pts]
            assert steps == sorted(set(steps)) and steps[-1] == STEPS  # each step once, in order
            # every point after the rollback point is the second go's (lr 0.01, loss 1), none of the first's
            assert all(p["lr"] == 0.01 and p["train_loss"] == 1.0 for p in pts if p["step"] > MARK)
            assert all(p["lr"] == 0.1 for p in pts if p["step"] <= MARK)


def test_compare_without_a_console_warns_of_a_failed_run(tmp_path, monkeypatch):
    def crash(*a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(adaptlr.auto.Auto, "fit", crash)
    store = str(tmp_path / "f.db")
    with pytest.warns(UserWarning, match=r"1 run\(s\) failed, not in .*linreg / auto s0: RuntimeError: boom"):
        res = compare("linreg", ["auto", "sgd(lr=0.05)"], [0], store=store, steps=20, progress=False)
    assert [j.method for j, _ in res.failed] == ["auto"] and [j.method for j in res.done] == ["sgd(lr=0.05)"]
    with Store(store) as st:
        assert [r["method"] for r in st.runs(status=None)] == ["sgd(lr=0.05)"]
