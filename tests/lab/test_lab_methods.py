"""The method spec grammar: valid and invalid specs, canonical forms, building optimizers and schedules."""

import inspect
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import adaptlr
from adaptlr.lab import available_methods, register_optimizer
from adaptlr.lab.catalog import optimizer_class
from adaptlr.lab.grammar import TUNE, SpecError, method_to_dict, parse_method, split_methods


@pytest.mark.parametrize(
    "spec, canonical",
    [
        ("adam", "adam(lr=0.001)"),
        ("Adam()", "adam(lr=0.001)"),
        ("adam(lr=3e-3) + cosine(warmup=0.05)", "adam(lr=0.003) + cosine(warmup=0.05)"),
        (
            "sgd(momentum=0.9, lr=0.1) + plateau(patience=4)",
            "sgd(lr=0.1, momentum=0.9) + plateau(patience=4)",
        ),
        ("adamw(3e-4, betas=(0.9, 0.95))", "adamw(betas=(0.9, 0.95), lr=0.0003)"),
        ("  prodigy ", "prodigy"),
        ("schedulefree_adamw", "schedulefree_adamw"),
        ("adam(lr=?) + cosine(warmup=?)", "adam(lr=?) + cosine(warmup=?)"),
        ("sgd(lr=1e-1, nesterov=True, momentum=.9)", "sgd(lr=0.1, momentum=0.9, nesterov=True)"),
    ],
)
def test_valid_specs_and_canonical_form(spec, canonical):
    m = parse_method(spec)
    assert m.canonical == canonical
    assert parse_method(m.canonical) == m  # the canonical form parses to the same method
    assert parse_method(method_to_dict(m)) == m  # and so does the dict form


@pytest.mark.parametrize(
    "specs",
    [
        ["sgd", "sgd(lr=0.1)", "SGD(0.1)", "sgd(lr=0.1, momentum=0)", "sgd(lr=0.1, nesterov=False)"],
        ["adam(lr=1)", "adam(lr=1.0)", "adam(1.0, betas=(0.9, 0.999))"],
        ["adam + cosine", "adam + cosine(warmup=0, final=0.0)", "adam(lr=0.001) + cosine(warmup=0.0)"],
        ["sgd + plateau", "sgd + plateau(patience=3, factor=0.5)", "sgd + plateau(factor=0.50)"],
        ["prodigy", "prodigy(lr=1.0)"],
    ],
)
def test_the_same_method_written_several_ways_is_one_method(specs):
    methods = {parse_method(s) for s in specs}
    assert len(methods) == 1, methods
    assert len({m.canonical for m in methods}) == 1


def test_durations_and_defaults_keep_their_meaning_in_the_canonical_form():
    # a duration of 1 is one step, 1.0 the whole run: not merged
    assert parse_method("adam + cosine(warmup=1)").canonical == "adam(lr=0.001) + cosine(warmup=1)"
    assert parse_method("adam + cosine(warmup=1.0)").canonical == "adam(lr=0.001) + cosine(warmup=1.0)"
    assert parse_method("sgd(lr=0.1, nesterov=True, momentum=0.9)") != parse_method("sgd(lr=0.1, momentum=0.9)")
    # a lab default that differs from the class default is written (plateau's patience 3, class default 10)
    assert parse_method("sgd + plateau(patience=10)").canonical == "sgd(lr=0.1) + plateau(patience=10)"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("adam + cosine(warmup=2.5)", "Invalid warmup: 2.5"),
        ("adam + cosine(warmup=-1)", "Invalid warmup: -1"),
        ("adam + warmup(steps=0)", "Invalid steps: 0"),
        ("adam + step(every=1.5)", "Invalid every: 1.5"),
    ],
)
def test_durations_follow_the_one_rule(spec, message):
    """One behaviour for "steps or a fraction of the run" (adaptlr._validation.duration), as in schedules."""
    with pytest.raises(SpecError, match=message):
        parse_method(spec).validate(total_steps=100)


def test_question_mark_is_a_tune_placeholder():
    m = parse_method("adam(lr=?, weight_decay=1e-4) + cosine(warmup=?)")
    assert m.optimizer.kwargs["lr"] is TUNE
    assert m.tuned == [(0, "lr"), (1, "warmup")]
    filled = m.fill({"lr": 0.01, "warmup": 0.1})
    assert filled.canonical == "adam(lr=0.01, weight_decay=0.0001) + cosine(warmup=0.1)"
    with pytest.raises(SpecError, match="no value given for 'cosine\\(warmup=\\?\\)'"):
        m.fill({"lr": 0.01})
    with pytest.raises(SpecError, match="placeholders"):
        m.validate()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("adma(lr=1e-3)", "unknown name 'adma'; did you mean 'adam'"),
        ("adam + cosin", "unknown name 'cosin'; did you mean 'cosine'"),
        ("adam + cosine(warmpu=0.1)", "cosine\\(\\) has no argument 'warmpu'; did you mean 'warmup'"),
        ("adam + plateau(patince=3)", "did you mean 'patience'"),
        ("adam(lr=1e-3", "cannot parse method spec"),
        ("adam * cosine", "joined with '\\+'"),
        ("adam + sgd", "two optimizers"),
        ("cosine + adam", "the optimizer term comes first"),
        ("cosine", "no optimizer term"),
        ("adam + cosine + linear", "two schedules"),
        ("adam + cosine(0.1)", "keyword arguments only"),
        ("adam(lr=foo)", "not a literal"),
        ("adam(lr=1, lr=2)", "got 'lr' twice"),
        ("", "non-empty"),
    ],
)
def test_invalid_specs(spec, message):
    with pytest.raises(SpecError, match=message):
        parse_method(spec)


def test_optimizer_arguments_are_checked_against_the_class():
    with pytest.raises(SpecError, match="unknown argument 'momentm'; did you mean 'momentum'"):
        parse_method("sgd(lr=0.1, momentm=0.9)").validate()
    with pytest.raises(SpecError, match="Invalid learning rate|lr"):
        parse_method("adam(lr=-1.0)").build([torch.nn.Parameter(torch.zeros(2))], 10)


def test_split_methods_keeps_commas_inside_parentheses():
    assert split_methods("adam(lr=1e-3, betas=(0.9, 0.99)),sgd(lr=0.1) + cosine(warmup=0.1), prodigy") == [
        "adam(lr=1e-3, betas=(0.9, 0.99))",
        "sgd(lr=0.1) + cosine(warmup=0.1)",
        "prodigy",
    ]


def test_classic_optimizers_resolve_to_adaptlr():
    for name, cls in [
        ("sgd", "SGD"),
        ("adagrad", "Adagrad"),
        ("rmsprop", "RMSprop"),
        ("adadelta", "Adadelta"),
        ("adam", "Adam"),
        ("adamw", "AdamW"),
        ("nadam", "NAdam"),
    ]:
        b = parse_method(name).build([torch.nn.Parameter(torch.zeros(3))], 10)
        expected = getattr(adaptlr, cls, None) or getattr(torch.optim, cls)
        assert type(b.optimizer) is expected
    assert "adam" in available_methods()["optimizers"]


def _run(build, steps):
    p = build.optimizer.param_groups[0]["params"][0]
    lrs, effs = [], []
    for step in range(steps):
        build.before_step(step)
        lrs.append(build.lr(step))
        effs.append(build.effective_lr(step))
        p.grad = torch.ones_like(p)
        build.optimizer.step()
    return lrs, effs


def test_cosine_with_warmup_maps_onto_fractions_of_the_budget():
    b = parse_method("adam(lr=0.1) + cosine(warmup=0.1, final=0.01)").build([torch.nn.Parameter(torch.zeros(2))], 100)
    lrs, effs = _run(b, 100)
    # warmup: linear from lr / 10 over 10 steps; then cosine from 0.1 to 0.001 over the remaining 90
    assert lrs[0] == pytest.approx(0.01) and lrs[5] == pytest.approx(0.01 + 0.09 * 5 / 10)
    assert lrs[10] == pytest.approx(0.1)
    k = 55 - 10
    assert lrs[55] == pytest.approx(0.001 + (0.1 - 0.001) * 0.5 * (1 + math.cos(math.pi * k / 90)))
    assert effs == pytest.approx(lrs)


def test_schedule_on_a_torch_optimizer_is_applied_by_hand():
    register_optimizer("torchsgd", torch.optim.SGD, lr=0.2)
    b = parse_method("torchsgd + linear(final=0.5)").build([torch.nn.Parameter(torch.zeros(2))], 10)
    assert b.manual_lr and type(b.optimizer) is torch.optim.SGD
    lrs, effs = _run(b, 10)
    assert lrs[0] == pytest.approx(0.2) and lrs[5] == pytest.approx(0.2 - 0.1 * 0.5)
    assert effs == pytest.approx(lrs)
    p = b.optimizer.param_groups[0]["params"][0]
    assert float(p.detach()[0]) == pytest.approx(-sum(lrs))  # the params moved by exactly the scheduled lrs


def test_plateau_controller_cuts_the_effective_lr():
    if "plateau" not in available_methods()["controllers"]:
        pytest.skip("adaptlr.controllers.ReduceOnPlateau not available")
    b = parse_method("sgd(lr=0.1) + plateau(patience=1, factor=0.5)").build(
        [torch.nn.Parameter(torch.zeros(2))], 10, higher_is_better=True
    )
    for value in (0.5, 0.5, 0.5, 0.5):  # no improvement: accuracy flat
        b.controllers[0].observe(value)
    b.before_step(0)
    assert b.effective_lr(0) == pytest.approx(0.05)  # one cut after more than `patience` flat values
    assert b.lr(0) == pytest.approx(0.1)  # the schedule value itself is unchanged


def test_lr_free_methods_are_offered_only_when_present():
    free = available_methods()["lr_free"]
    for name in free:
        parse_method(name).validate()
    # every name in the table resolves iff the class exists
    assert ("prodigy" in free) == (hasattr(adaptlr, "Prodigy") or _has_free("Prodigy"))


def _has_free(cls):
    try:
        import adaptlr.free as f
    except ImportError:
        return False
    return hasattr(f, cls)


_floats = st.floats(min_value=1e-8, max_value=10.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    opt=st.sampled_from(["sgd", "momentum", "adam", "adamw", "rmsprop", "adagrad", "nadam", "prodigy"]),
    lr=_floats,
    sched=st.sampled_from([None, "cosine", "linear", "wsd", "one_cycle", "warmup"]),
    frac=st.floats(min_value=0.0, max_value=0.5),
    plateau=st.booleans(),
    spaces=st.sampled_from(["", " ", "  "]),
)
@example(opt="prodigy", lr=1.0, sched=None, frac=0.0, plateau=False, spaces="")  # (its class default: left out)
def test_canonical_form_is_a_fixed_point(opt, lr, sched, frac, plateau, spaces):
    """Any spec written with any spacing and number formatting parses to the method its canonical form does."""
    s = f"{opt}({spaces}lr={lr!r}{spaces})"
    if sched in ("cosine", "linear", "wsd"):
        s += f"{spaces}+{spaces}{sched}(warmup={frac:.3e})"
    elif sched == "warmup":
        s += f" + warmup(steps={frac})"
    elif sched:
        s += f" + {sched}"
    if plateau:
        s += " + plateau(patience=2)"
    m = parse_method(s)
    assert parse_method(m.canonical) == m
    assert parse_method(m.canonical).canonical == m.canonical
    # (an argument equal to the class's default is left out: a learning-rate-free method's lr=1.0, its multiplier)
    default = inspect.signature(optimizer_class(opt)).parameters["lr"].default
    assert m.optimizer.kwargs.get("lr", default) == lr


def test_schedule_terms_are_schedule_specs():
    """One schedule language (issue 11): every lab schedule term is built by adaptlr.schedules.from_spec, and
    schedule(spec=...) takes any schedules spec as a multiplier of the lr, with fractions of the run."""
    from adaptlr import schedules as S
    from adaptlr.lab.schedule_terms import schedule_spec

    p = [torch.nn.Parameter(torch.zeros(2))]
    b = parse_method("adam(lr=0.1) + cosine(warmup=0.1, final=0.01)").build(p, 100)
    m = parse_method("adam(lr=0.1) + cosine(warmup=0.1, final=0.01)")
    assert b.schedule == S.from_spec(schedule_spec(m.schedule, 0.1, 100))
    assert b.schedule == S.warmup(S.cosine(0.1, 90, final=0.001), 10, start=0.01)
    general = parse_method('adam(lr=0.1) + schedule(spec="warmup(cosine(1.0, steps=0.9), steps=0.1)")')
    assert general.canonical == "adam(lr=0.1) + schedule(spec='warmup(cosine(1.0, steps=0.9), steps=0.1)')"
    g = general.build([torch.nn.Parameter(torch.zeros(2))], 100)
    assert [g.schedule(t) for t in (0, 5, 10, 55, 99)] == pytest.approx(
        [0.1 * S.warmup(S.cosine(1.0, 90), 10)(t) for t in (0, 5, 10, 55, 99)], rel=1e-12
    )
    assert parse_method(general.canonical) == general
    for bad, message in [
        ('schedule(spec="cosine(1.0, steps=2.5)")', "Invalid steps: 2.5"),
        ('schedule(spec="from_epochs(fn=\\"os:_exit\\", steps_per_epoch=1)")', "unknown callable"),
        ('schedule(spec="linear(1.0, -1.0, 10)")', "negative learning rate"),
        ("schedule(spec=3)", "Invalid spec"),
        ("schedule", "Invalid spec"),
        ("cosine(final=True)", "Invalid final: True"),
    ]:
        with pytest.raises(SpecError, match=message):
            parse_method(f"adam(lr=0.1) + {bad}").validate(total_steps=100)
