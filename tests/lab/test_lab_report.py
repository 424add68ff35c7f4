"""Reports: every number recomputed here, independently, from the raw rows; figures written and non-empty."""

import math
import sqlite3
import statistics
from pathlib import Path

import numpy as np
import pytest

from adaptlr.lab.report import profile, report, sensitivity, summarize
from adaptlr.lab.store import Store

TARGET = 0.8


def _fill(path):
    """A store with made-up runs: 3 methods x 3 seeds on an accuracy task, 2 methods on a loss task."""
    rng = np.random.default_rng(0)
    with Store(path) as st:
        for task, metric, hib, methods in [
            ("acc-task", "accuracy", True, ["sgd(lr=0.1)", "sgd(lr=0.3)", "adam(lr=0.001)"]),
            ("loss-task", "loss", False, ["sgd(lr=0.1)", "adam(lr=0.001)"]),
        ]:
            for m in methods:
                for seed in range(3):
                    cfg = {"metric": metric, "higher_is_better": hib, "target": TARGET if hib else 1.0}
                    rid = st.start_run(task, m, seed, "steps=20,batch=8", cfg)
                    pts, wall = [], 0.0
                    for step in range(1, 21):
                        wall += float(rng.uniform(0.01, 0.02))
                        ev = step % 4 == 0
                        metric_v = float(rng.uniform(0.5, 1.0) if hib else rng.uniform(0.5, 2.0)) if ev else None
                        pts.append(
                            {
                                "step": step,
                                "train_loss": float(rng.uniform(0, 2)),
                                "lr": 0.1,
                                "eff_lr": 0.1,
                                "metric": metric_v,
                                "test_loss": metric_v,
                                "wall": wall,
                            }
                        )
                    st.add_points(rid, pts[:8])
                    st.finish_run(
                        rid,
                        pts[8:],
                        {
                            "steps_done": 20,
                            "wall": wall,
                            "final_metric": -1.0,
                            "best_metric": -1.0,
                            "diverged": seed == 2 and m == "sgd(lr=0.3)",
                        },
                    )


def _independent(path, task):
    """Recompute the table from SQL rows with the statistics module (no code shared with adaptlr.lab.report)."""
    con = sqlite3.connect(path)
    runs = con.execute(
        "SELECT id, method, diverged, config, wall FROM runs WHERE task=? AND status='done'", (task,)
    ).fetchall()
    import json

    out = {}
    for rid, method, diverged, cfg, run_wall in runs:
        hib = json.loads(cfg)["higher_is_better"]
        target = json.loads(cfg)["target"]
        pts = con.execute("SELECT step, metric, wall FROM points WHERE run_id=? ORDER BY step", (rid,)).fetchall()
        evals = [(s, m, w) for s, m, w in pts if m is not None]
        reached = [(s, w) for s, m, w in evals if (m >= target if hib else m <= target)]
        d = out.setdefault(method, {"final": [], "best": [], "stt": [], "ttt": [], "sps": [], "wall": [], "div": 0})
        worst = -math.inf if hib else math.inf  # a diverged run's final metric: the worst there is
        d["final"].append(worst if diverged else evals[-1][1])
        d["best"].append(max(m for _, m, _ in evals) if hib else min(m for _, m, _ in evals))
        reached = [] if diverged else reached  # and it never reaches the target
        d["stt"].append(reached[0][0] if reached else math.inf)
        d["ttt"].append(reached[0][1] if reached else math.inf)
        d["sps"].append(pts[-1][0] / run_wall)  # the steps delivered over the run's whole wall time
        d["wall"].append(run_wall)
        d["div"] += diverged
    con.close()
    return out


def _quartiles(xs):
    """statistics' inclusive quartiles (numpy's linear interpolation), with an infinite end as the limit."""
    xs = sorted(xs)
    if all(math.isfinite(x) for x in xs):
        q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        return q2, q1, q3

    def q(p):
        pos = p * (len(xs) - 1)
        i, frac = int(pos), pos - int(pos)
        if frac == 0:
            return xs[i]
        a, b = xs[i], xs[i + 1]
        return a if math.isinf(a) else b if math.isinf(b) else a + (b - a) * frac

    return q(0.5), q(0.25), q(0.75)


def _median_with_inf(xs):
    xs = sorted(xs)
    n = len(xs)
    mid = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    return mid


@pytest.mark.parametrize("task", ["acc-task", "loss-task"])
def test_table_numbers_recomputed_from_raw_rows(tmp_path, task):
    path = str(tmp_path / "runs.db")
    _fill(path)
    rows = summarize(path, task)[task]
    ref = _independent(path, task)
    assert {r.method for r in rows} == set(ref)
    for r in rows:
        d = ref[r.method]
        assert r.runs == 3
        assert r.final == pytest.approx(_quartiles(d["final"]))
        assert r.best == pytest.approx(_quartiles(d["best"]))
        assert r.steps_to_target == _median_with_inf(d["stt"])
        assert r.time_to_target == pytest.approx(_median_with_inf(d["ttt"]))
        assert r.reached == sum(math.isfinite(x) for x in d["stt"])
        assert r.steps_per_s == pytest.approx(statistics.median(d["sps"]))
        assert r.wall == pytest.approx(statistics.median(d["wall"]))
        assert r.diverged == d["div"]
        assert r.final[0] != -1.0  # computed from the points, not from the runs' cached summary
    # sorted best first
    finals = [r.final[0] for r in rows]
    assert finals == sorted(finals, reverse=rows[0].higher_is_better)


def _store_with_a_diverged_leader(path, hib):
    """Two methods on one task; the one whose last finite metric is by far the best diverged on every seed:
    its last point has a non-finite (None) train loss and metric, and one of its runs is not even flagged."""
    with Store(path) as st:
        cfg = {"metric": "accuracy" if hib else "loss", "higher_is_better": hib, "target": 0.9 if hib else 0.1}
        for method, good, blew_up in [
            ("sgd(lr=0.1)", 0.6 if hib else 0.4, False),
            ("sgd(lr=10.0)", 0.99 if hib else 0.01, True),
        ]:
            for seed in range(3):
                rid = st.start_run("t", method, seed, "steps=3,batch=8", cfg)
                pts = [
                    {
                        "step": s,
                        "train_loss": 1.0,
                        "lr": 0.1,
                        "eff_lr": 0.1,
                        "metric": good,
                        "test_loss": 1.0,
                        "wall": 0.01 * s,
                    }
                    for s in (1, 2)
                ]
                last = {
                    "step": 3,
                    "train_loss": 1.0,
                    "lr": 0.1,
                    "eff_lr": 0.1,
                    "metric": good,
                    "test_loss": 1.0,
                    "wall": 0.03,
                }
                if blew_up:
                    last.update(train_loss=None, metric=None, test_loss=None)
                st.finish_run(
                    rid,
                    [*pts, last],
                    {
                        "steps_done": 3,
                        "wall": 0.03,
                        "final_metric": good,
                        "best_metric": good,
                        "diverged": blew_up and seed != 0,
                    },
                )


@pytest.mark.parametrize("hib", [True, False])
def test_a_diverged_run_is_never_ranked_above_a_finished_one(tmp_path, hib):
    """issue 9: on a loss metric, a run that ended non-finite reported its last finite metric as final and
    could rank #1."""
    from rich.console import Console

    path = str(tmp_path / "runs.db")
    _store_with_a_diverged_leader(path, hib)
    rows = summarize(path, "t")["t"]
    assert [r.method for r in rows] == ["sgd(lr=0.1)", "sgd(lr=10.0)"]
    bad = rows[1]
    assert bad.final[0] == (-math.inf if hib else math.inf) and bad.diverged == 3 and bad.reached == 0
    assert bad.best[0] == pytest.approx(0.99 if hib else 0.01)  # what it reached before, kept honest
    console = Console(record=True, width=200)
    report(path, out=tmp_path / "figs", console=console)
    text = console.export_text()
    assert "diverged" in text and text.index("sgd(lr=0.1)") < text.index("sgd(lr=10.0)")
    assert _is_png(tmp_path / "figs" / "t_sensitivity.png")
    prof = profile({"t": rows})
    assert prof["ratios"]["sgd(lr=10.0)"] == [math.inf]  # it never counts as reaching the target
    sens = sensitivity(rows)["sgd"]
    assert sens[1][0] == 10.0 and math.isinf(sens[1][1][0])  # the worst value, never drawn as a good lr


def test_tune_never_calls_a_diverged_trial_best(tmp_path, monkeypatch):
    from adaptlr.lab import search

    path = str(tmp_path / "runs.db")
    _store_with_a_diverged_leader(path, hib=False)
    monkeypatch.setattr(search, "compare", lambda *a, **k: None)  # the trials are already in the store

    class _Task:
        steps, batch_size, higher_is_better = 3, 8, False

    monkeypatch.setattr(search, "get_task", lambda name: _Task())
    import warnings

    with warnings.catch_warnings():  # these made-up runs have no validation metric: tune says so
        warnings.simplefilter("ignore", UserWarning)
        res = search.tune(
            "t", "sgd(lr=?)", 2, store=path, steps=3, batch_size=8, ranges={"lr": (0.1, 10.0, True)}, progress=False
        )
    assert res[0][0] == "sgd(lr=0.1)" and not math.isfinite(res[-1][1])


def test_target_override(tmp_path):
    path = str(tmp_path / "runs.db")
    _fill(path)
    rows = summarize(path, "acc-task", target=0.0)["acc-task"]
    # every run beats 0 at its first eval, except the diverged one (sgd(lr=0.3), seed 2), which never counts
    assert all(r.steps_to_target == 4 and r.reached == 3 - r.diverged for r in rows)
    assert sum(r.diverged for r in rows) == 1
    rows = summarize(path, "acc-task", target=1.5)["acc-task"]
    assert all(math.isinf(r.steps_to_target) and r.reached == 0 for r in rows)


def test_sensitivity_groups_methods_differing_only_in_lr(tmp_path):
    path = str(tmp_path / "runs.db")
    _fill(path)
    rows = summarize(path, "acc-task")["acc-task"]
    sens = sensitivity(rows)
    assert list(sens) == ["sgd"] and [lr for lr, _ in sens["sgd"]] == [0.1, 0.3]


def test_performance_profile_by_hand():
    from adaptlr.lab.report import MethodSummary

    def row(task, method, steps):
        return MethodSummary(task, method, "b", 1, (0, 0, 0), (0, 0, 0), steps, steps, 1, 1.0, 0, "accuracy", True, 0.5)

    s = {
        "t1": [row("t1", "a", 10), row("t1", "b", 20)],
        "t2": [row("t2", "a", 40), row("t2", "b", math.inf)],
        "t3": [row("t3", "a", 30), row("t3", "b", 10)],
    }
    p = profile(s)
    assert p["ratios"] == {"a": [1.0, 1.0, 3.0], "b": [2.0, math.inf, 1.0]}
    at = lambda m, tau: p["rho"][m][np.searchsorted(p["taus"], tau, side="right") - 1]  # noqa: E731
    assert at("a", 1.0) == pytest.approx(2 / 3) and at("b", 1.0) == pytest.approx(1 / 3)
    assert at("a", 3.0) == pytest.approx(1.0) and at("b", 3.0) == pytest.approx(2 / 3)


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_prints_tables_and_writes_figures(tmp_path):
    from rich.console import Console

    path = str(tmp_path / "runs.db")
    _fill(path)
    console = Console(record=True, width=200)
    out = tmp_path / "figs"
    report(path, out=out, console=console, markdown_path=tmp_path / "table.md")
    text = console.export_text()
    assert "acc-task" in text and "loss-task" in text and "sgd(lr=0.3)" in text
    for name in [
        "acc-task_curves.png",
        "acc-task_lr.png",
        "acc-task_sensitivity.png",
        "loss-task_curves.png",
        "profile.png",
    ]:
        assert _is_png(out / name), name
    assert not (out / "loss-task_sensitivity.png").exists()  # nothing swept there
    md = (tmp_path / "table.md").read_text()
    assert "| `adam(lr=0.001)` | 3 |" in md
    assert not list(out.glob(".tmp-*"))  # atomic writes leave no temporary files


#: made-up runs of 300 steps: adamw's wall time per seed, and Auto's (its race takes the first half, before any
#: point of the committed lineage is logged), and the lr Auto chose per seed
ADAMW_WALL = (9.0, 10.0, 11.0)
AUTO_WALL = (14.0, 15.0, 16.0)
AUTO_LRS = (0.01, 0.03, 0.2, 0.3)  # 4 seeds: their median (0.115) is a value no seed used


def _store_with_auto(path):
    """An ``auto`` run and an ``adamw`` run per seed, their points as the lab logs them: adamw's clock runs from
    its first step, Auto's points are written after its race, so their times span only the second half."""
    cfg = {"metric": "accuracy", "higher_is_better": True, "target": 0.9, "steps": 300}
    with Store(path) as st:
        for seed in range(4):
            for method, wall, lr in [
                ("adamw(lr=0.001)", ADAMW_WALL[seed % 3], 1e-3),
                ("auto", AUTO_WALL[seed % 3], AUTO_LRS[seed]),
            ]:
                rid = st.start_run("t", method, seed, "steps=300,batch=8", cfg)
                race = 0.0 if method != "auto" else wall / 2
                pts = [
                    {
                        "step": step,
                        "train_loss": 1.0 / step,
                        "lr": lr,
                        "eff_lr": lr,
                        "metric": 0.95 if step % 100 == 0 else None,
                        "test_loss": 0.2 if step % 100 == 0 else None,
                        "wall": race + (wall - race) * step / 300,
                    }
                    for step in range(10, 301, 10)
                ]
                st.finish_run(rid, pts, {"steps_done": 300, "wall": wall, "final_metric": 0.95, "diverged": False})


def test_wall_time_and_steps_per_s_count_everything_a_method_spent(tmp_path):
    """issue 18: steps/s from the points' time span left out Auto's race (Auto showed faster than Adam while
    its wall time was 1.5x Adam's); the table reports the run's whole wall time, and steps/s from it."""
    from rich.console import Console

    from adaptlr.lab.report import markdown

    path = str(tmp_path / "runs.db")
    _store_with_auto(path)
    rows = {r.method: r for r in summarize(path, "t")["t"]}
    auto, adamw = rows["auto"], rows["adamw(lr=0.001)"]
    walls = lambda ws: [ws[s % 3] for s in range(4)]  # noqa: E731
    assert auto.wall == pytest.approx(statistics.median(walls(AUTO_WALL)))
    assert adamw.wall == pytest.approx(statistics.median(walls(ADAMW_WALL)))
    assert auto.steps_per_s == pytest.approx(statistics.median(300 / w for w in walls(AUTO_WALL)))
    assert adamw.steps_per_s == pytest.approx(statistics.median(300 / w for w in walls(ADAMW_WALL)))
    assert auto.steps_per_s < adamw.steps_per_s  # the slower method on the clock is the slower one here
    console = Console(record=True, width=200)
    report(path, out=None, console=console)
    text = console.export_text()
    assert "wall s" in text and f"{auto.wall:.3g}" in text
    md = markdown(list(rows.values()))
    assert "| wall s | steps/s |" in md and f"| {auto.wall:.3g} | {auto.steps_per_s:.0f} |" in md


def test_lr_figure_shows_each_seeds_own_lr(tmp_path, monkeypatch):
    """issue 18: the lr figure drew the median over seeds of the lrs Auto chose, a value no seed used; each
    seed's choice is drawn (its line's values are that seed's logged lrs)."""
    from adaptlr import plotting

    path = str(tmp_path / "runs.db")
    _store_with_auto(path)
    figures = {}
    real_save = plotting.save

    def keep(fig, target, **kw):
        figures[Path(target).name] = fig
        return real_save(fig, target, **kw)

    monkeypatch.setattr(plotting, "save", keep)
    report(path, out=tmp_path / "figs", console=_quiet_console())
    ax = figures["t_lr.png"].axes[0]
    drawn = [(tuple(np.asarray(ln.get_ydata(), dtype=float)), ln) for ln in ax.get_lines()]
    plotted = {v for y, _ in drawn for v in y}
    assert statistics.median(AUTO_LRS) not in plotted  # no line at a value no seed used
    auto = []
    for lr in AUTO_LRS:  # each seed's own lrs, as logged, are a line of the figure
        (line,) = [ln for y, ln in drawn if y == (lr,) * 30]
        auto.append(line)
    assert len({ln.get_color() for ln in auto}) == 1  # one method, one colour
    assert [ln.get_gid() for ln in auto] == [f"auto seed {s}" for s in range(4)]
    assert [ln.get_label() for ln in ax.get_legend().get_lines()].count("auto") == 1


def _quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), width=200)
