"""CLI smoke tests: `adaptlr compare / report / tune / find-lr / plot-schedule / list`, through subprocess and
through `main()`; and `import adaptlr` stays light."""

import subprocess
import sys

import pytest

from adaptlr.lab.cli import main


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "adaptlr.lab", *args], capture_output=True, text=True, timeout=300)


def test_compare_then_resume_then_report(tmp_path, capsys):
    store, out = str(tmp_path / "runs.db"), tmp_path / "out"
    args = [
        "compare",
        "--task",
        "linreg",
        "--methods",
        "sgd(lr=0.05),adam(lr=0.05) + cosine(warmup=0.1)",
        "--seeds",
        "2",
        "--steps",
        "30",
        "--store",
        store,
        "--out",
        str(out),
        "--no-progress",
    ]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert "4 runs trained, 0 already in" in r.stdout
    assert "adam(lr=0.05) + cosine(warmup=0.1)" in r.stdout and "final mse" in r.stdout
    for name in ("linreg_curves.png", "linreg_lr.png", "profile.png"):
        assert (out / name).stat().st_size > 5000
    # the same commands through main(), in this process (a subprocess costs seconds of imports)
    assert main([*args, "--seeds", "3", "--no-report"]) == 0  # extend: only seed 2 of each method is new
    assert "2 runs trained, 4 already in" in capsys.readouterr().out
    assert main(["report", "--store", store, "--no-figures", "--markdown", str(tmp_path / "t.md")]) == 0
    assert "linreg" in capsys.readouterr().out
    assert "| `sgd(lr=0.05)` | 3 |" in (tmp_path / "t.md").read_text()


USER_MODULE = """
import torch
from adaptlr.lab import Task, register_optimizer, register_task
from adaptlr.lab.data import make_linreg

register_task(Task("user-linreg", lambda: torch.nn.Linear(10, 1), lambda: make_linreg(n=300, n_test=50),
                   torch.nn.functional.mse_loss, "mse", steps=10, batch_size=16), replace=True)
register_optimizer("usersgd", torch.optim.SGD, lr=0.01)
"""


def test_users_own_task_and_optimizer_in_parallel_workers(tmp_path):
    (tmp_path / "labtest_usermod.py").write_text(USER_MODULE)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptlr.lab",
            "compare",
            "--import",
            "labtest_usermod",
            "--task",
            "user-linreg",
            "--methods",
            "usersgd(lr=0.05) + cosine",
            "--seeds",
            "2",
            "--jobs",
            "2",
            "--store",
            "runs.db",
            "--no-figures",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "2 runs trained" in r.stdout and "usersgd(lr=0.05) + cosine" in r.stdout


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys):
    store = str(tmp_path / "runs.db")
    assert main(["compare", "--task", "linreg", "--methods", "adma(lr=0.1)", "--store", store]) == 2
    assert "did you mean 'adam'" in capsys.readouterr().err
    assert (
        main(
            [
                "compare",
                "--task",
                "linreg",
                "--methods",
                "adam(lr=0.1) + cosine(warmpu=0.1)",
                "--store",
                store,
            ]
        )
        == 2
    )
    assert "did you mean 'warmup'" in capsys.readouterr().err
    assert main(["compare", "--task", "mnist-mpl", "--methods", "adam", "--store", store]) == 2
    assert "did you mean 'mnist-mlp'" in capsys.readouterr().err
    assert (
        main(
            [
                "compare",
                "--task",
                "linreg",
                "--methods",
                "adam",
                "--data-dir",
                str(tmp_path),
                "--store",
                store,
            ]
        )
        == 2
    )
    assert "does not read a --data-dir" in capsys.readouterr().err
    assert main(["report", "--store", str(tmp_path / "none.db")]) == 2


def test_tune_grid_and_optuna_share_the_store(tmp_path, capsys):
    store = str(tmp_path / "runs.db")
    common = ["--task", "linreg", "--method", "sgd(lr=?)", "--steps", "20", "--store", store, "--no-progress"]
    assert main(["tune", *common, "--trials", "3", "--range", "lr=0.001:0.1"]) == 0
    out = capsys.readouterr().out
    assert "sgd(lr=0.001)" in out and "sgd(lr=0.01)" in out and "sgd(lr=0.1)" in out and "best: sgd(lr=0.1)" in out
    assert main(["tune", *common, "--trials", "2", "--sampler", "optuna", "--range", "lr=0.001:0.1"]) == 0
    import optuna

    studies = optuna.get_all_study_summaries(f"sqlite:///{store}")
    assert len(studies) == 1 and studies[0].n_trials == 2
    from adaptlr.lab.store import Store

    with Store(store) as st:
        assert len({r["method"] for r in st.runs("linreg")}) >= 3  # trials are ordinary runs in the store


def test_plot_schedule_and_find_lr(tmp_path, capsys):
    png = tmp_path / "s.png"
    assert main(["plot-schedule", "warmup(cosine(0.1, steps=90), steps=10)", "--steps", "100", "-o", str(png)]) == 0
    assert png.stat().st_size > 5000
    assert main(["plot-schedule", "cosin(0.1, steps=90)", "--steps", "100", "-o", str(png)]) == 2
    pytest.importorskip("adaptlr.finder")
    fig = tmp_path / "f.png"
    assert (
        main(
            [
                "find-lr",
                "--task",
                "digits-logreg",
                "--method",
                "sgd(momentum=0.9)",
                "--steps",
                "30",
                "-o",
                str(fig),
            ]
        )
        == 0
    )
    assert fig.stat().st_size > 5000 and "suggest" in capsys.readouterr().out


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist1d-cnn" in out and "char-lm" in out and "optimizers: sgd, momentum" in out


def test_import_adaptlr_stays_light():
    code = (
        "import sys, adaptlr, adaptlr.lab, adaptlr.lab.cli; "
        "heavy = [m for m in ('matplotlib', 'rich', 'optuna', 'sklearn', 'mnist1d', 'mlxtend', 'scipy') "
        "if m in sys.modules]; print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


REFUSED = [
    (
        ["compare", "--task", "linreg", "--methods", "sgd", "--seeds", "0"],
        "argument --seeds: 0 \\(expected an integer >= 1\\)",
    ),
    (
        ["compare", "--task", "linreg", "--methods", "sgd", "--seeds", "-2"],
        "argument --seeds: -2 \\(expected an integer >= 1\\)",
    ),
    (["compare", "--task", "linreg", "--methods", "sgd", "--steps", "0"], "argument --steps: 0 \\(expected"),
    (["compare", "--task", "linreg", "--methods", "sgd", "--steps", "-5"], "argument --steps: -5 \\(expected"),
    (["compare", "--task", "linreg", "--methods", "sgd", "--batch-size", "0"], "argument --batch-size: 0 \\(expected"),
    (["compare", "--task", "linreg", "--methods", "sgd", "--jobs", "0"], "argument --jobs/-j: 0 \\(expected"),
    (["compare", "--task", "linreg", "--methods", "sgd(lr=-1)"], "Invalid learning rate|Invalid lr"),
    (["compare", "--task", "linreg", "--methods", "sgd + plateau(factor=2)"], "Invalid factor: 2"),
    (["compare", "--task", "linreg", "--methods", "sgd + cosine(warmup=2.5)"], "Invalid warmup: 2.5"),
    (["compare", "--task", "linreg", "--methods", "sgd + linear(final=-1)"], "negative learning rate"),
    (["compare", "--task", "linreg", "--methods", ""], "--methods is empty"),
    (["tune", "--task", "linreg", "--method", "sgd(lr=?)", "--trials", "0"], "argument --trials: 0 \\(expected"),
    (
        ["tune", "--task", "linreg", "--method", "sgd(lr=?)", "--range", "lrr=0.01:0.1"],
        "--range 'lrr'.*did you mean 'lr'",
    ),
    (["tune", "--task", "linreg", "--method", "sgd(lr=?) + plateau(factor=2)"], "Invalid factor: 2"),
    (["tune", "--task", "linreg", "--method", "sgd(lr=0.1)"], "no '\\?' to tune"),
    (["find-lr", "--task", "linreg", "--method", "sgd", "--start", "1", "--end", "0.1"], "must be greater"),
    (
        ["find-lr", "--task", "linreg", "--method", "sgd", "--steps", "1"],
        "argument --steps: 1 \\(expected an integer >= 2\\)",
    ),
    (["plot-schedule", "linear(0.1, -0.1, 10)", "--steps", "10"], "negative learning rate"),
    (["plot-schedule", 'from_epochs(fn="os:_exit", steps_per_epoch=1)', "--steps", "3"], "unknown callable"),
    (["plot-schedule", "[" * 2000, "--steps", "3"], "plot-schedule: "),
    (["report", "--target", "nan"], "argument --target: nan \\(expected a finite number\\)"),
]


@pytest.mark.parametrize("argv, message", REFUSED, ids=[" ".join(a)[:60] for a, _ in REFUSED])
def test_values_refused_up_front_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    """issue 9: exit code 2, one line on stderr, no traceback, and nothing trained (no store written)."""
    import adaptlr.lab.jobs as jobs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jobs, "train", lambda *a, **k: pytest.fail("trained although a value was refused"))
    store = str(tmp_path / "runs.db")
    extra = ["--store", store] if argv[0] in ("compare", "tune", "report") else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    import re

    assert re.search(message, err), err
    if argv[0] != "report":
        assert not (tmp_path / "runs.db").exists()  # refused before the store was touched


@pytest.mark.parametrize("content", [b"this is not a database" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_damaged_store_gives_one_line_and_is_not_trained_into(tmp_path, capsys, content):
    store = tmp_path / "runs.db"
    store.write_bytes(content)
    argv = [
        "compare",
        "--task",
        "linreg",
        "--methods",
        "sgd",
        "--seeds",
        "1",
        "--steps",
        "5",
        "--no-progress",
        "--no-report",
        "--store",
        str(store),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(store) in err and "Traceback" not in err, err
    assert store.read_bytes() == content  # never trained into
    assert main(["report", "--store", str(store), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(store) in err


def test_an_unwritable_store_gives_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = blocker / "runs.db"  # a folder that is a file: cannot be created
    argv = [
        "compare",
        "--task",
        "linreg",
        "--methods",
        "sgd",
        "--seeds",
        "1",
        "--steps",
        "5",
        "--no-progress",
        "--store",
        str(store),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(store) in err, err


def test_a_spec_written_two_ways_is_one_method_in_the_store(tmp_path, capsys):
    store = str(tmp_path / "runs.db")
    common = ["--task", "linreg", "--seeds", "1", "--steps", "5", "--no-progress", "--no-report", "--store", store]
    assert main(["compare", "--methods", "sgd", *common]) == 0
    assert main(["compare", "--methods", "sgd(lr=0.1), SGD(0.1, momentum=0)", *common]) == 0
    assert "0 runs trained, 2 already in" in capsys.readouterr().out


def test_find_lr_never_suggests_from_a_diverged_range(tmp_path, capsys):
    """issue 9: `find-lr --start 10 --end 1e6` printed "suggested lr: 10" at confidence 0.00."""
    fig = tmp_path / "f.png"
    argv = [
        "find-lr",
        "--task",
        "linreg",
        "--method",
        "sgd",
        "--start",
        "10",
        "--end",
        "1e6",
        "--steps",
        "30",
        "-o",
        str(fig),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "suggested lr" not in out and "confidence 0.00" not in out
    assert "no suggestion: the loss diverged right at the start of the tested range (lr 10): start lower" in out
    assert fig.exists()


def test_a_store_url_is_printed_without_its_password(capsys):
    from adaptlr.lab.cli.common import shown as _shown

    assert _shown("postgresql://user:s3cret@db.example:5432/runs") == "postgresql://user:***@db.example:5432/runs"
    assert _shown("runs.db") == "runs.db"
    url = "postgresql://user:s3cret@127.0.0.1:1/none"  # nothing listens on port 1: the store cannot be opened
    code = main(["report", "--store", url, "--no-figures"])
    err = capsys.readouterr().err
    assert code == 2 and "s3cret" not in err and err.count("\n") == 1, err
