"""lr_find: parity with torch-lr-finder's range_test, exact restore, suggestions, schedules, plot."""

import contextlib
import copy
import io
import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from adaptlr import schedules as S  # noqa: E402
from adaptlr.finder import Suggestion, _suggest, lr_find, suggest  # noqa: E402


def problem(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.sin(x @ torch.randn(6, 1, generator=g)) + 0.05 * torch.randn(n, 1, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return model, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("mode,accumulation,end", [("exp", 1, 10.0), ("linear", 1, 1.0), ("exp", 2, 3.0)])
def test_curve_matches_torch_lr_finder(opt_name, mode, accumulation, end):
    from torch_lr_finder import LRFinder

    model, loader = problem()
    twin = copy.deepcopy(model)
    opt = OPTIMIZERS[opt_name](model.parameters())
    result = lr_find(
        model,
        torch.nn.functional.mse_loss,
        loader,
        opt,
        start=1e-5,
        end=end,
        steps=60,
        mode=mode,
        accumulation=accumulation,
    )

    finder = LRFinder(twin, OPTIMIZERS[opt_name](twin.parameters()), torch.nn.MSELoss())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(
            loader, start_lr=1e-5, end_lr=end, num_iter=60, step_mode=mode, accumulation_steps=accumulation
        )
    assert result.lrs == pytest.approx(finder.history["lr"], rel=1e-12)
    assert result.losses == finder.history["loss"]  # same batches, same float32 math
    assert len(result.lrs) == len(finder.history["lr"])

    lo, hi = result.usable
    for s in result.suggestions.values():  # suggestions only from the usable part of the curve
        assert lo <= s.index < hi and result.lrs[0] <= s.lr <= result.lrs[hi - 1]
    steepest = result.suggestions.get("steepest")
    # their steepest point, over their whole plotted curve: the same as ours when it lies in our usable part
    # (theirs may come from the part after the loss blew up, which ours leaves out)
    if len(result.lrs) >= 17 and steepest is not None:
        with contextlib.redirect_stdout(io.StringIO()):
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots()
            _, their_lr = finder.plot(ax=ax, suggest_lr=True)
            plt.close(fig)
        usable = result.lrs[lo] <= their_lr <= result.lrs[hi - 1]
        if mode == "exp" and usable:  # uniform in log lr: the same steepest point as their np.gradient
            assert steepest.lr == pytest.approx(their_lr, rel=1e-12)


@pytest.mark.parametrize("end", [10.0, 1.0])
def test_steepest_matches_torch_lr_finder_on_a_clean_curve(end):
    """A curve that falls, then (end=10) diverges: torch-lr-finder's steepest point is ours, and it lies in
    the usable part (before the divergence)."""
    from torch_lr_finder import LRFinder

    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 6, generator=g)
    y = x @ torch.randn(6, 1, generator=g) + 0.05 * torch.randn(512, 1, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    twin = copy.deepcopy(model)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    result = lr_find(
        model,
        torch.nn.functional.mse_loss,
        loader,
        torch.optim.SGD(model.parameters(), lr=0.1),
        start=1e-4,
        end=end,
        steps=60,
    )
    finder = LRFinder(twin, torch.optim.SGD(twin.parameters(), lr=0.1), torch.nn.MSELoss())
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(loader, start_lr=1e-4, end_lr=end, num_iter=60)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        _, their_lr = finder.plot(ax=ax, suggest_lr=True)
        plt.close(fig)
    assert result.diverged == (end == 10.0)
    assert result.suggestions["steepest"].lr == pytest.approx(their_lr, rel=1e-12)
    assert result.suggestions["steepest"].confidence_words == "high"
    lo, hi = result.usable
    assert result.lrs[lo] <= their_lr <= result.lrs[hi - 1] <= result.lrs[-1]


def test_diverging_run_stops_and_restores_everything_bit_identically():
    model, loader = problem(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):  # some optimizer state to restore
        opt.zero_grad()
        x, y = next(iter(loader))
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    params = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict())
    rng = torch.get_rng_state()
    result = lr_find(model, torch.nn.functional.mse_loss, loader, opt, start=1e-6, end=100.0, steps=100)
    assert result.diverged and len(result.lrs) < 100
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))
    after = opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for k, s in state["state"].items():
        for name, v in s.items():
            assert torch.equal(after["state"][k][name], v)
    assert torch.equal(torch.get_rng_state(), rng)


def test_group_ratios_are_kept_and_restored():
    model, loader = problem(2)
    first, last = list(model.parameters())[:2], list(model.parameters())[2:]
    opt = torch.optim.SGD([{"params": first, "lr": 0.1}, {"params": last, "lr": 0.01}])
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append([g["lr"] for g in o.param_groups]))
    result = lr_find(model, torch.nn.functional.mse_loss, loader, opt, start=1e-4, end=1e-1, steps=20)
    assert all(b == pytest.approx(a / 10, rel=1e-12) for a, b in seen)
    assert [a for a, _ in seen] == pytest.approx(result.lrs, rel=1e-12)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]
    logs = [math.log10(v) for v in lrs]
    # falls fastest around lr = 1e-3, bottoms out near 1e-1.5, then blows up
    losses = [1.0 - 0.8 / (1 + math.exp(-3 * (t + 3))) + (0.2 * math.exp(3 * (t + 1)) if t > -1.5 else 0) for t in logs]
    out = suggest(lrs, losses)
    assert out["steepest"].lr == pytest.approx(1e-3, rel=0.2)
    assert 1e-4 < out["valley"].lr < 1e-2
    assert out["minimum"].lr == pytest.approx(lrs[losses.index(min(losses[10:95]))] / 10)
    assert all(0.5 <= s.confidence <= 1.0 for s in out.values())
    assert suggest(lrs, [1.0] * 100) == {}  # the loss never fell: no suggestion (not one of confidence 0)


def test_no_suggestion_from_a_diverged_or_untested_region():
    """issue 9: `find-lr --start 10 --end 1e6` printed "suggested lr: 10" at confidence 0.00 and a "minimum"
    below the tested range."""
    model, loader = problem(5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lr_find(model, torch.nn.functional.mse_loss, loader, opt, start=10.0, end=1e6, steps=50)
    assert result.diverged and result.suggestions == {}
    with pytest.raises(ValueError, match="no learning rate can be suggested: the loss diverged right at the start"):
        _ = result.lr
    assert "start lower" in result.warnings[0]
    # a curve that bottoms out at its very first point, then blows up: nothing from the blown-up part
    lrs = [10 ** (-3 + 5 * i / 49) for i in range(50)]
    up = [1.0 + 0.01 * i + (10.0 * i if i > 30 else 0.0) for i in range(50)]
    assert suggest(lrs, up, skip_start=0, skip_end=0) == {}
    # lowest loss near the start of the range: the minimum rule (lr / 10) would fall below it: not offered
    dip = [1.0, 0.5, 0.45, 0.6, 0.8, 1.2, 3.0, 9.0] + [20.0] * 10
    out, warnings, _ = _suggest(lrs[:18], dip, 0, 0, diverged=False)
    assert "minimum" not in out and all(lrs[0] <= s.lr <= lrs[4] for s in out.values())
    assert any("below the tested range" in w for w in warnings)


def test_confidence_in_words():
    assert Suggestion("valley", 0.1, 3, 0.7).confidence_words == "high"
    assert Suggestion("valley", 0.1, 3, 0.3).confidence_words == "medium"
    assert Suggestion("valley", 0.1, 3, 0.05).confidence_words == "low"
    lrs = [10 ** (-4 + 3 * i / 59) for i in range(60)]
    slight = [1.0 - 0.05 * i / 59 for i in range(60)]  # fell by 5% and was still falling
    out, warnings, _ = _suggest(lrs, slight, 10, 5, diverged=False)
    assert out and any("low confidence" in w for w in warnings) and any("still falling" in w for w in warnings)


def test_schedule_from_the_suggestion_and_plot(tmp_path):
    model, loader = problem(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    result = lr_find(model, torch.nn.functional.mse_loss, loader, opt, start=1e-5, end=10.0, steps=50)
    peak = result.lr
    oc = result.schedule(1000)
    assert oc == S.one_cycle(peak, 1000) and max(oc(t) for t in range(1000)) == pytest.approx(peak)
    wc = result.schedule(1000, kind="warmup_cosine", method="steepest", warmup=0.1)
    assert wc(100) == pytest.approx(result.suggestions["steepest"].lr) and wc(0) == 0.0
    with pytest.raises(ValueError, match="Invalid kind"):
        result.schedule(10, kind="step")
    fig = result.plot(tmp_path / "f.png")
    assert (tmp_path / "f.png").exists() and len(fig.axes[0].lines) == 4


def test_validation_and_exhausted_data():
    model, loader = problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for kwargs, name in [
        (dict(start=0), "start"),
        (dict(end=1e-9), "end"),
        (dict(steps=1), "steps"),
        (dict(mode="log"), "mode"),
        (dict(smooth=1.0), "smooth"),
        (dict(diverge=1.0), "diverge"),
        (dict(accumulation=0), "accumulation"),
    ]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            lr_find(model, torch.nn.functional.mse_loss, loader, opt, **kwargs)
    once = ((x, y) for x, y in loader)
    with pytest.raises(ValueError, match="ran out"):
        lr_find(model, torch.nn.functional.mse_loss, once, opt, steps=40)


def test_works_with_an_adaptlr_optimizer_with_a_schedule():
    from adaptlr.optim import SGD

    model, loader = problem(4)
    s = S.cosine(0.05, 100)
    opt = SGD(model.parameters(), lr=s, momentum=0.9)
    opt.param_groups[0]["adaptlr_lr_scale"] = 0.5
    opt.refresh_lr()
    result = lr_find(model, torch.nn.functional.mse_loss, loader, opt, start=1e-4, end=1.0, steps=30)
    assert len(result.lrs) >= 10
    assert opt.param_groups[0]["adaptlr_schedule"] is s and opt.param_groups[0]["adaptlr_lr_scale"] == 0.5
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * s(0))


def _on_curve(x, xs, ys):
    """The loss a line drawn through (xs, ys) on a log-x axis passes through at x (straight between points)."""
    import bisect

    j = bisect.bisect_left(xs, x)
    if xs[j] == x:
        return ys[j]
    t = (math.log10(x) - math.log10(xs[j - 1])) / (math.log10(xs[j]) - math.log10(xs[j - 1]))
    return ys[j - 1] + t * (ys[j] - ys[j - 1])


def _lines_by_label(fig):
    """The curve ("smoothed loss") and each suggestion's marker (its label starts with the rule's name)."""
    return {ln.get_label().split(":")[0]: ln for ln in fig.axes[0].get_lines()}


@pytest.mark.parametrize("skip", [(0, 0), (10, 5)])
def test_plot_marks_each_suggestion_on_the_drawn_curve(tmp_path, skip):
    """issue 18: the "minimum" marker sat at the lowest loss's height but at a tenth of its lr, off the curve;
    every marker is read back from the figure and must lie on the plotted line at its suggestion's lr."""
    from adaptlr.finder import LRFindResult

    lrs = [10 ** (-6 + 7 * i / 99) for i in range(100)]
    logs = [math.log10(v) for v in lrs]
    losses = [1.0 - 0.8 / (1 + math.exp(-3 * (t + 3))) + (0.2 * math.exp(3 * (t + 1)) if t > -1.5 else 0) for t in logs]
    result = LRFindResult(lrs=lrs, losses=losses, raw_losses=losses, diverged=False, suggestions=suggest(lrs, losses))
    fig = result.plot(tmp_path / "f.png", skip_start=skip[0], skip_end=skip[1])
    lines = _lines_by_label(fig)
    xs, ys = (list(map(float, v)) for v in lines["smoothed loss"].get_data())
    assert xs == lrs[skip[0] : len(lrs) - skip[1]]
    assert set(lines) == {"smoothed loss", "steepest", "valley", "minimum"}
    for name, s in result.suggestions.items():
        (x,), (y,) = lines[name].get_data()
        assert x == s.lr
        assert y == pytest.approx(_on_curve(x, xs, ys), rel=1e-12, abs=1e-12)
    (_,), (y_min,) = lines["minimum"].get_data()
    assert y_min > min(losses) + 0.05  # a tenth of the best lr is well up the curve, not at its bottom


def test_plot_of_a_real_range_test_marks_the_curve(tmp_path):
    model, loader = problem(4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = lr_find(model, torch.nn.functional.mse_loss, loader, opt, start=1e-5, end=10.0, steps=60)
    assert "minimum" in result.suggestions
    fig = result.plot()
    lines = _lines_by_label(fig)
    xs, ys = (list(map(float, v)) for v in lines["smoothed loss"].get_data())
    for name, s in result.suggestions.items():
        (x,), (y,) = lines[name].get_data()
        assert x == s.lr and y == pytest.approx(_on_curve(x, xs, ys), rel=1e-12)
