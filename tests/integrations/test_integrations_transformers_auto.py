"""adaptlr.integrations.transformers_auto.AutoLRCallback: Auto's race inside the real Hugging Face Trainer (a tiny GPT-2
built from its config, dict batches; nothing downloads)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from _integrations import importable_torchvision, tiny_gpt2, token_dataset  # noqa: E402

importable_torchvision()  # transformers' model modules import torchvision where it is installed
transformers = pytest.importorskip("transformers", reason="the integrations extra (transformers) is not installed")
pytest.importorskip("accelerate", reason="the integrations extra (accelerate) is not installed")

from torch.optim.optimizer import register_optimizer_step_pre_hook  # noqa: E402

import adaptlr  # noqa: E402
from adaptlr.integrations.transformers import OptimizerSchedule, optimizers  # noqa: E402
from adaptlr.integrations.transformers_auto import AutoLRCallback  # noqa: E402

STEPS = 30


def _Tokens(n, seed):
    return token_dataset(n, seed)


def _model(dtype=torch.float64):
    return tiny_gpt2(dtype)


class _Trainer(transformers.Trainer):
    """The real Trainer; its loss records who called it: the race (before the Trainer's first step) or not, in
    train or eval mode, and under which autocast."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []  # (phase, training, autocast dtype or None)
        self.phase = "race"

    def training_step(self, *args, **kwargs):  # (the Trainer's own steps; the race calls compute_loss only)
        self.phase = "trainer"
        return super().training_step(*args, **kwargs)

    def compute_loss(self, model, inputs, *args, **kwargs):
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        self.calls.append((self.phase, model.training, dtype))
        return super().compute_loss(model, inputs, *args, **kwargs)

    def race_steps(self):
        return sum(1 for phase, training, _ in self.calls if phase == "race" and training)


class _Watch(transformers.TrainerCallback):
    """After the race: the lr each Trainer step applied (SGD without momentum
    moves an element by -lr * g), the race's store (to see it released), the end-of-run parameters."""

    def __init__(self, trainer, callback):
        self.trainer, self.callback = trainer, callback
        self.applied, self.store, self.final = [], None, None

    def on_step_begin(self, args, state, control, **kwargs):
        result = self.callback.result
        if self.store is None and result is not None and result.commit is not None:
            self.store = result.commit.race.store

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        p = model.transformer.wte.weight
        g = p.grad.flatten()
        self.i = int(torch.argmax(g.abs()))
        self.before, self.g = p.detach().flatten()[self.i].item(), g[self.i].item()

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        p = model.transformer.wte.weight
        self.applied.append((self.before - p.detach().flatten()[self.i].item()) / self.g)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step >= state.max_steps:
            self.final = _params(model)


def _args(out, **kwargs):
    base = {
        "output_dir": str(out),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "max_steps": STEPS,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 1,
        "report_to": [],
        "max_grad_norm": 0.0,
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    return transformers.TrainingArguments(**{**base, **kwargs})


def _auto(**kwargs):
    # a short grid (no extension past its edges) keeps the race small; every other knob is Auto's default
    return adaptlr.Auto(**{"optimizer": adaptlr.SGD, "lrs": (0.01, 0.1, 1.0), "keep": 2, "extend": 0, **kwargs})


def _run(out, auto=None, resume=None, model=None, optimizer=None, attach=True, **args):
    model = model or _model()
    opt = optimizer if optimizer is not None else adaptlr.SGD(model.parameters(), lr=0.1)
    trainer = _Trainer(
        model=model,
        args=_args(out, **args),
        train_dataset=_Tokens(48, 0),
        eval_dataset=_Tokens(16, 1),
        optimizers=(opt, None),
    )
    callback = AutoLRCallback(auto or _auto(), val_cost=1.0)
    if attach:
        callback.attach(trainer)
    watch = _Watch(trainer, callback)
    trainer.add_callback(watch)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, callback, watch, opt


def _logged(trainer, after=0):
    """The learning_rate the Trainer logged at its steps after ``after``."""
    return [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e and e["step"] > after]


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


@pytest.mark.filterwarnings("ignore:.*AutoLRCallback.*no trained model validated better")
def test_race_on_the_trainers_loss_then_the_trainer_trains_the_rest_on_the_committed_schedule(tmp_path):
    trainer, cb, watch, opt = _run(tmp_path)
    result, s2 = cb.result, cb.plan["rung2"]
    assert len(result.lrs) == 3 and cb.lr in result.lrs
    assert trainer.race_steps() == result.train_steps > 0  # the race trained on the Trainer's own loss
    assert any(phase == "race" and not training for phase, training, _ in trainer.calls)  # and scored on it
    winner = next(r for r in result.racers if r.lr == cb.lr)
    assert winner.steps == s2 > 0
    assert trainer.state.global_step == len(watch.applied) == STEPS - s2  # the Trainer's steps: the rest
    assert opt.param_groups[0]["adaptlr_steps"] == STEPS  # the optimizer's clock: the whole run
    want = [result.schedule(s2 + k) for k in range(STEPS - s2)]
    assert want[-1] < want[0]  # (the run's tail decays)
    assert watch.applied == pytest.approx(want, rel=1e-9)  # the lr each step applied ...
    assert _logged(trainer) == pytest.approx(want, rel=1e-12)  # ... is what the Trainer logs
    assert "adaptlr_auto_lr_scale" not in opt.param_groups[0] and "initial_lr" not in opt.param_groups[0]
    assert cb.committed in ("final", "watch", "branch", "start") and result.commit is None
    # the callback validated the run the Trainer drove at its watch points (those the budget afforded)
    assert cb.watched and all(s > s2 and s in result.plan.watches() for s, _ in cb.watched)
    assert watch.store is not None and watch.store.keys() == []  # the race's states are released
    assert 1.0 < cb.cost < 1.6


def test_accumulation_clipping_and_bf16_are_raced_as_the_trainer_applies_them(tmp_path):
    norms = []

    def record(optimizer, args, kwargs):
        if trainer.phase == "race":
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    hook = register_optimizer_step_pre_hook(record)
    try:
        model = _model(torch.float32)
        trainer = _Trainer(
            model=model,
            args=_args(tmp_path, gradient_accumulation_steps=2, max_grad_norm=0.05, bf16=True),
            train_dataset=_Tokens(48, 0),
            eval_dataset=_Tokens(16, 1),
            optimizers=(adaptlr.SGD(model.parameters(), lr=0.1), None),
        )
        cb = AutoLRCallback(_auto(keep_best=False), val_cost=1.0).attach(trainer)
        trainer.train()
    finally:
        hook.remove()
    race = [(training, dtype) for phase, training, dtype in trainer.calls if phase == "race"]
    assert sum(training for training, _ in race) == 2 * cb.result.train_steps  # two batches a step
    assert {dtype for _, dtype in race} == {torch.bfloat16}  # every race forward under bf16 autocast
    assert len(norms) == cb.result.train_steps and max(norms) <= 0.05 * (1 + 1e-5)  # clipped as the Trainer clips
    grad_norms = [e["grad_norm"] for e in trainer.state.log_history if "grad_norm" in e]
    assert max(grad_norms) > 0.05  # (the Trainer's unclipped norms: clipping was not idle)
    assert trainer.state.global_step + cb.plan["rung2"] == STEPS


@pytest.mark.filterwarnings("ignore:.*(Checkpoint included callbacks|rng state).*")
@pytest.mark.parametrize("restore", [False, True], ids=["state-read", "callback-rebuilt"])
def test_resume_continues_the_schedule_without_racing_again(tmp_path, restore):
    save = 8
    first, cb1, watch1, _ = _run(tmp_path, auto=_auto(keep_best=False), save_strategy="steps", save_steps=save)
    s2 = cb1.plan["rung2"]
    checkpoint = tmp_path / f"checkpoint-{save}"
    assert checkpoint.is_dir()

    second, cb2, watch2, opt2 = _run(
        tmp_path,
        auto=_auto(),
        resume=str(checkpoint),
        save_strategy="steps",
        save_steps=save,
        restore_callback_states_from_checkpoint=restore,
    )
    assert second.race_steps() == 0  # no race: every training forward is one of the Trainer's steps
    assert sum(training for _, training, _ in second.calls) == STEPS - s2 - save
    assert cb2.result is None
    assert second.state.global_step == STEPS - s2
    assert opt2.param_groups[0]["adaptlr_steps"] == STEPS
    assert _logged(second, after=save) == _logged(first, after=save)  # the schedule continues where it was
    assert len(_logged(second, after=save)) == STEPS - s2 - save
    assert torch.equal(watch2.final, watch1.final)  # and so does the run, bit for bit
    if not restore:  # (restored by the Trainer, the callback is a new instance: the user's one saw nothing)
        assert cb2.lr == cb1.lr and cb2.plan == cb1.plan and cb2.committed == "final"
        with pytest.raises(ValueError, match=f"resumed with max_steps {STEPS + 10}, but the race planned"):
            _run(tmp_path, resume=str(checkpoint), save_strategy="steps", save_steps=save, max_steps=STEPS + 10)


@pytest.mark.parametrize("slot", ["trainer-built", "optimizer-schedule"])
def test_the_trainers_param_groups_are_raced_and_its_scheduler_slot_left_to_the_schedule(tmp_path, slot):
    steps, model = 20, _model()
    if slot == "trainer-built":  # the Trainer builds AdamW with its decay / no-decay groups (args.weight_decay)
        given = {"optimizer_cls_and_kwargs": (adaptlr.AdamW, {})}
    else:
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        opt = adaptlr.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}])
        given = {"optimizers": optimizers(opt)}
    trainer = _Trainer(
        model=model,
        args=_args(tmp_path, max_steps=steps, weight_decay=0.1),
        train_dataset=_Tokens(48, 0),
        eval_dataset=_Tokens(16, 1),
        **given,
    )
    slot_before = trainer.lr_scheduler
    cb = AutoLRCallback(adaptlr.Auto(lrs=(1e-3, 1e-2, 1e-1), keep=2, extend=0), val_cost=1.0).attach(trainer)
    trainer.train()
    opt = trainer.optimizer.optimizer  # (under accelerate's wrapper)
    # the race's optimizers had the Trainer's groups: the winner's state loaded into them, decay kept per group
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert isinstance(trainer.lr_scheduler, OptimizerSchedule)
    assert (trainer.lr_scheduler is slot_before) == (slot == "optimizer-schedule")
    s2 = cb.plan["rung2"]
    assert _logged(trainer) == pytest.approx([cb.result.schedule(s2 + k) for k in range(steps - s2)], rel=1e-12)
    assert [g["adaptlr_steps"] for g in opt.param_groups] == [steps, steps]


@pytest.mark.parametrize(
    "case",
    ["torch-optimizer", "other-adaptlr-class", "not-attached", "no-eval-dataset", "plateau-scheduler"],
)
def test_refused_in_one_clear_line(tmp_path, case):
    model = _model()
    args, optimizers, eval_dataset, attach = {}, (adaptlr.SGD(model.parameters(), lr=0.1), None), _Tokens(8, 1), True
    if case == "torch-optimizer":
        optimizers, match = (torch.optim.SGD(model.parameters(), lr=0.1), None), "adaptlr.SGD.*got torch.optim"
    elif case == "other-adaptlr-class":
        optimizers, match = (adaptlr.AdamW(model.parameters()), None), "adaptlr.SGD.*got adaptlr.AdamW"
    elif case == "not-attached":
        attach, match = False, r"attach\(trainer\)"
    elif case == "no-eval-dataset":
        eval_dataset, match = None, "eval_dataset"
    else:
        args = {"lr_scheduler_type": "reduce_lr_on_plateau", "eval_strategy": "steps", "eval_steps": 5}
        match = "ReduceLROnPlateau.*reduce_lr_on_plateau"
    trainer = _Trainer(
        model=model,
        args=_args(tmp_path, **args),
        train_dataset=_Tokens(16, 0),
        eval_dataset=eval_dataset,
        optimizers=optimizers,
    )
    cb = AutoLRCallback(_auto(), val_cost=1.0)
    if attach:
        cb.attach(trainer)
    else:
        trainer.add_callback(cb)
    with pytest.raises((TypeError, ValueError, RuntimeError), match=match) as err:
        trainer.train()
    assert "\n" not in str(err.value)
    assert trainer.calls == []  # refused before the race


def test_attach_binds_once_and_checks_its_arguments(tmp_path):
    model = _model()
    trainer = _Trainer(model=model, args=_args(tmp_path), train_dataset=_Tokens(8, 0), eval_dataset=_Tokens(8, 1))
    cb = AutoLRCallback()
    assert cb.attach(trainer) is cb and cb.attach(trainer) is cb
    assert [c for c in trainer.callback_handler.callbacks if c is cb] == [cb]
    assert isinstance(cb.auto, adaptlr.Auto) and cb.auto.inner is adaptlr.AdamW
    with pytest.raises(TypeError, match="Invalid auto"):
        AutoLRCallback(auto="auto")
    with pytest.raises(ValueError, match="val_cost"):
        AutoLRCallback(val_cost=-1.0)
    with pytest.raises(TypeError, match="Invalid trainer"):
        AutoLRCallback().attach(object())
