"""The step protocol's Phase: names bound to a rule's signature once, by name, with errors that name what is wrong."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import adaptlr
from adaptlr.optim import Phase
from adaptlr.rules import elementwise


@elementwise
def _axpy(p, g, buf, lr, decay, nesterov):
    buf = buf * decay + g
    step = g + buf * decay if nesterov else buf
    return p - lr * step, buf


@elementwise
def _axpy_reordered(p, g, buf, decay, lr, nesterov):  # the same math, its scalars in the other order
    return _axpy(p, g, buf, lr, decay, nesterov)


def test_signature_is_split_into_columns_scalars_flags():
    phase = Phase(_axpy, "p g buf=momentum_buffer", writes="p buf", flags="nesterov")
    assert phase.arguments == ("p", "g", "buf")
    assert phase.sources == ("param", "grad", "momentum_buffer")
    assert phase.scalars == ("lr", "decay")
    assert phase.flags == ("nesterov",)
    assert phase.write_index == (0, 2)
    assert phase.bind({"decay": 0.9, "lr": 0.1, "nesterov": 1, "unused": 3}) == ((0.1, 0.9), (True,))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(columns="g p buf", writes="p"), "not the first arguments"),
        (dict(columns="p g buf", writes="p", flags="decay"), "not the last arguments"),
        (dict(columns="p g buf", writes="p lr", flags="nesterov"), "are not columns"),
    ],
)
def test_a_declaration_that_does_not_fit_the_rule_is_refused(kwargs, match):
    with pytest.raises(TypeError, match=match):
        Phase(_axpy, **kwargs)


def test_a_missing_value_is_named():
    phase = Phase(_axpy, "p g buf", writes="p buf", flags="nesterov")
    with pytest.raises(KeyError, match="no value for 'decay'"):
        phase.bind({"lr": 0.1, "nesterov": False})
    with pytest.raises(KeyError, match="no column 'buf'"):
        phase.apply({"p": [torch.zeros(2)], "g": [torch.zeros(2)]}, {"lr": 0.1, "decay": 0.9, "nesterov": False})


@pytest.mark.parametrize("engine", ["fused", "foreach", "loop"])
def test_reordering_a_rules_scalars_cannot_change_the_result(engine):
    if engine == "fused" and not adaptlr.engines.fused_available():
        pytest.skip("Numba is not installed")
    prefer = {"fused": "fused", "foreach": "foreach", "loop": "loop"}[engine]
    torch.manual_seed(0)
    p, g, buf = (torch.randn(5, dtype=torch.float64) for _ in range(3))
    values = {"lr": 0.1, "decay": 0.9, "nesterov": True}
    out = []
    for rule in (_axpy, _axpy_reordered):
        cols = {"p": [p.clone()], "g": [g.clone()], "buf": [buf.clone()]}
        Phase(rule, "p g buf", writes="p buf", flags="nesterov").apply(cols, values, prefer=prefer)
        out.append((cols["p"][0], cols["buf"][0]))
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    expected_buf = buf * 0.9 + g
    torch.testing.assert_close(out[0][1], expected_buf, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(out[0][0], p - 0.1 * (g + expected_buf * 0.9), rtol=1e-15, atol=1e-15)


def test_every_optimizer_binds_by_name():
    """No optimizer in the library carries a positional rule: each declares its phases (or, where its statistics are
    not elementwise, runs named phases itself), each a marked elementwise rule the engines may trace."""
    for name in adaptlr.__all__:
        cls = getattr(adaptlr, name)
        if not (isinstance(cls, type) and issubclass(cls, adaptlr.Optimizer)):
            continue
        assert not hasattr(cls, "rule"), f"{name} still declares a positional rule"
        assert not hasattr(cls, "_scalars"), f"{name} still passes positional scalars"
        for phase in cls.phases:
            assert isinstance(phase, Phase), f"{name}: {phase!r} is not a Phase"
            assert getattr(phase.rule, "__adaptlr_elementwise__", False), (
                f"{name}: {phase.name} is not an @elementwise rule"
            )


def test_a_rule_returning_an_input_unchanged_costs_no_store():
    """The fused engine stores a written column only where its new value differs from the old (DoG's x0 after the
    first step): the generated kernel has no store for it."""
    from adaptlr.engines._numba import kernel_source
    from adaptlr.engines._trace import trace
    from adaptlr.rules.free_dog import dog_stats

    later = kernel_source(trace(dog_stats, [None, None, None], 1, (False, False), 3), (2,), 2, "float64")
    first = kernel_source(trace(dog_stats, [None, None, None], 1, (False, True), 3), (2,), 2, "float64")
    assert "a2[i] =" not in later
    assert "a2[i] =" in first


# ------------------------------------------------------------------------------ docs/CONTRACTS.md's worked example
from adaptlr._validation import check_betas, check_real  # noqa: E402
from adaptlr.optim import Optimizer  # noqa: E402
from adaptlr.rules.adaptive import lion  # noqa: E402


class _ExampleLion(Optimizer):
    supports_complex = False
    phases = (Phase(lion, "p g m=exp_avg", writes="p m"),)  # state "exp_avg" is created zero

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, foreach=None, fused=None,
                 nonfinite=None):  # fmt: skip
        check_betas(betas)
        check_real("weight_decay", weight_decay, 0.0)
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay), foreach=foreach, fused=fused,
                         nonfinite=nonfinite)  # fmt: skip

    def _values(self, phase, ctx, key):
        lr, (b1, b2) = float(ctx.lr), ctx.group["betas"]
        return dict(decay_keep=1 - lr * ctx.group["weight_decay"], lr=lr, beta1=b1, c1=1 - b1, beta2=b2, c2=1 - b2)


@pytest.mark.parametrize(
    "engine", [dict(), dict(foreach=True), dict(foreach=False)], ids=["default", "foreach", "loop"]
)
def test_the_worked_example_is_lion(engine):
    torch.manual_seed(1)
    ref = [torch.randn(4, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)]
    a = [t.clone().requires_grad_() for t in ref]
    b = [t.clone().requires_grad_() for t in ref]
    opt_a = _ExampleLion(a, lr=3e-2, betas=(0.8, 0.95), weight_decay=0.1, **engine)
    opt_b = adaptlr.Lion(b, lr=3e-2, betas=(0.8, 0.95), weight_decay=0.1, **engine)
    for _ in range(20):
        for params, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            sum((p**2).sum() + p.sin().sum() for p in params).backward()
            opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    for x, y in zip(a, b):
        torch.testing.assert_close(opt_a.state[x]["exp_avg"], opt_b.state[y]["exp_avg"], rtol=0, atol=0)


def test_the_adaptive_rules_moved_out_of_free_still_resolve_with_a_warning():
    for name in ("Lion", "AdaBelief", "LAMB"):
        with pytest.warns(DeprecationWarning, match=f"adaptlr.optim.{name}"):
            assert getattr(adaptlr.free, name) is getattr(adaptlr, name) is getattr(adaptlr.optim, name)
        assert name not in adaptlr.free.__all__
    with pytest.raises(AttributeError):
        adaptlr.free.NoSuchOptimizer  # noqa: B018


# ------------------------------------------------------------------------------ phases by name, one counter
ROOT = Path(adaptlr.__file__).resolve().parent


def _optimizers():
    classes = [getattr(adaptlr, n) for n in adaptlr.__all__]
    return [c for c in classes if isinstance(c, type) and issubclass(c, adaptlr.Optimizer) and c.phases]


def test_phases_are_dispatched_by_name_never_by_position():
    """No code picks a phase's logic by its position (``phase is self.phases[1]``): a reader would have to count;
    the phases of a step with several have distinct names, the last one ``update``."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted(ROOT.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "phases"
    ]
    assert not found, f"phases indexed by position: {found}"
    for cls in _optimizers():
        names = [p.name for p in cls.phases]
        assert len(set(names)) == len(names), (cls.__name__, names)
        if len(names) > 1:
            assert names[-1] == "update", (cls.__name__, names)


def test_the_free_methods_advance_their_counters_in_one_place():
    """``group["k"]`` and ``state["step"]`` of the learning-rate-free methods advance only in
    ``FreeOptimizer._count_step``; what one phase leaves for the next is typed (``FreeStep``), not a dict."""
    found = []
    for path in sorted((ROOT / "free").glob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name != "_count_step"):
            for node in ast.walk(fn):
                if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript):
                    key = node.target.slice
                    if isinstance(key, ast.Constant) and key.value in ("k", "step"):
                        found.append(f"{path.name}:{node.lineno} ({fn.name})")
    assert not found, f"counters advanced outside _count_step: {found}"
    from adaptlr.free._base import FreeStep

    ctx = FreeStep({})
    assert (ctx.dlr, ctx.eta, ctx.update) == (None, None, None) and not hasattr(ctx, "scratch")


@pytest.mark.parametrize("package", ["engines", "optim", "free", "rules", "reference"])
def test_no_file_of_the_core_is_over_450_lines(package):
    long = {p.name: n for p in (ROOT / package).rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split where the concepts split: {long}"
