"""adaptlr in the Hugging Face Trainer (the real package + accelerate; a tiny GPT-2 built from its config)."""

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

import adaptlr  # noqa: E402
from adaptlr import schedules  # noqa: E402
from adaptlr.integrations.transformers import (  # noqa: E402
    ControllerCallback,
    EffectiveLRCallback,
    optimizers,
)

SCHEDULE = schedules.warmup(schedules.cosine(0.05, steps=14), steps=2)
PLATEAU = {"mode": "min", "factor": 0.5, "patience": 0, "threshold": 0.3}  # a 30% drop counts: cuts come early
EVAL_EVERY = 4


def _Tokens(n, seed):
    return token_dataset(n, seed)


def _model():
    return tiny_gpt2()


class _Applied(transformers.TrainerCallback):
    """The lr each step applied, measured on the lm head's first row: SGD without momentum moves it by -lr * g."""

    def __init__(self):
        self.applied, self.eval_losses = [], []

    def _p(self, model):
        return model.transformer.wte.weight

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        p = self._p(model)
        g = p.grad.flatten()
        self.i = int(torch.argmax(g.abs()))
        self.before, self.g = p.detach().flatten()[self.i].item(), g[self.i].item()

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.applied.append((self.before - self._p(model).detach().flatten()[self.i].item()) / self.g)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.eval_losses.append(metrics["eval_loss"])


def _args(out, **kwargs):
    base = {
        "output_dir": str(out),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "max_steps": 16,
        "eval_strategy": "steps",
        "eval_steps": EVAL_EVERY,
        "save_strategy": "steps",
        "save_steps": 8,
        "logging_steps": 1,
        "report_to": [],
        "max_grad_norm": 0.0,
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    return transformers.TrainingArguments(**{**base, **kwargs})


def _trainer(out, callbacks, **kwargs):
    args = _args(out, **kwargs.pop("args", {}))
    return transformers.Trainer(
        model=kwargs.pop("model", None) or _model(),
        args=args,
        train_dataset=_Tokens(32, 0),
        eval_dataset=_Tokens(8, 1),
        callbacks=callbacks,
        **kwargs,
    )


def _plateau_factors(losses):
    """The factor after each observation, from torch's own ReduceLROnPlateau."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **PLATEAU)
    out = [1.0]
    for v in losses:
        sched.step(v)
        out.append(opt.param_groups[0]["lr"])
    return out


def _logged(trainer):
    return [e["learning_rate"] for e in trainer.state.log_history if "learning_rate" in e]


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_schedule_with_controller_logs_applies_and_resumes_bit_identically(tmp_path):
    def run(out, resume=None):
        model = _model()
        opt = adaptlr.SGD(model.parameters(), lr=SCHEDULE)
        applied = _Applied()
        trainer = _trainer(
            out, [ControllerCallback("ReduceOnPlateau", **PLATEAU), applied], model=model, optimizers=optimizers(opt)
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer, applied

    trainer, applied = run(tmp_path / "a")
    factors = _plateau_factors(applied.eval_losses)
    want = [SCHEDULE(t) * factors[t // EVAL_EVERY] for t in range(16)]
    assert factors[-2] < 1  # cuts happened
    assert applied.applied == pytest.approx(want, rel=1e-9)  # (1) no Trainer decay multiplied in
    assert _logged(trainer) == pytest.approx(want, rel=1e-12)  # (2) the lr each step used
    [callback] = [c for c in trainer.callback_handler.callbacks if isinstance(c, ControllerCallback)]

    # (3) + (4) resume from checkpoint-8 (the Trainer's own torch.load(weights_only=True) of optimizer.pt)
    resumed, applied2 = run(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint-8"))
    assert applied2.applied == applied.applied[8:]
    [callback2] = [c for c in resumed.callback_handler.callbacks if isinstance(c, ControllerCallback)]
    assert callback2.controller.state_dict() == callback.controller.state_dict()
    assert torch.equal(_params(resumed.model), _params(trainer.model))


def test_the_trainer_default_decay_around_a_schedule_is_refused(tmp_path):
    model = _model()
    trainer = _trainer(tmp_path, [], model=model, optimizers=(adaptlr.SGD(model.parameters(), lr=SCHEDULE), None))
    with pytest.raises(RuntimeError, match="schedule"):
        trainer.train()


@pytest.mark.parametrize("cls", [torch.optim.SGD, adaptlr.SGD], ids=["torch", "adaptlr"])
def test_controller_cuts_land_under_the_trainers_own_schedule(tmp_path, cls):
    # the recipe with optimizer_cls_and_kwargs: the Trainer's warmup + linear decay, the controller's cuts on top
    applied = _Applied()
    trainer = _trainer(
        tmp_path,
        [ControllerCallback("ReduceOnPlateau", **PLATEAU), EffectiveLRCallback(), applied],
        optimizer_cls_and_kwargs=(cls, {"lr": 0.05}),
        args={"warmup_steps": 2, "save_strategy": "no"},
    )
    trainer.train()
    factors = _plateau_factors(applied.eval_losses)
    hf = [0.05 * min((t + 1 - 1) / 2, 1.0) if t < 2 else 0.05 * (16 - t) / 14 for t in range(16)]
    want = [lr * factors[t // EVAL_EVERY] for t, lr in enumerate(hf)]
    assert factors[-2] < 1
    assert applied.applied[1:] == pytest.approx(want[1:], rel=1e-9)  # step 0 has lr 0 (warmup from 0)
    assert _logged(trainer) == pytest.approx(want, rel=1e-12)


class _Replay(transformers.TrainerCallback):
    """The optimizer's parameters at the start and every gradient it stepped on (float64, in its order)."""

    def __init__(self):
        self.x0, self.grads = None, []

    def _params(self, optimizer):
        opt = optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer
        return [p for g in opt.param_groups for p in g["params"]]

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.x0 = [p.detach().numpy().copy() for p in self._params(optimizer)]

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.grads.append([p.grad.detach().numpy().copy() for p in self._params(optimizer)])


def _free_trainer(out, cls, kwargs, path, callbacks):
    """An LR-free method under its own lr (``optimizers(opt)``) or under the Trainer's linear decay (the
    multiplier 1 -> 1/16, with EffectiveLRCallback)."""
    args = {"save_strategy": "no", "eval_strategy": "no"}
    if path == "optimizers":
        model = _model()
        return _trainer(
            out, callbacks, model=model, optimizers=optimizers(cls(model.parameters(), **kwargs)), args=args
        )
    return _trainer(out, [EffectiveLRCallback(), *callbacks], optimizer_cls_and_kwargs=(cls, kwargs), args=args)


def _multiplier(path, t):
    return 1.0 if path == "optimizers" else (16 - t) / 16  # the Trainer's "linear": lr * (16 - t) / 16


@pytest.mark.parametrize("path", ["optimizers", "trainer_schedule"])
@pytest.mark.parametrize(
    ("cls", "kwargs"), [(adaptlr.DoG, {}), (adaptlr.DAdaptSGD, {"momentum": 0.0})], ids=["DoG", "DAdaptSGD"]
)
def test_lr_free_sgd_methods_log_the_lr_each_step_applied(tmp_path, cls, kwargs, path):
    # (issue 18) the Trainer logged learning_rate 1.0 while the step applied d * lr; these two step x -= lr_t g
    applied = _Applied()
    trainer = _free_trainer(tmp_path, cls, kwargs, path, [applied])
    trainer.train()
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert type(opt) is cls
    assert max(applied.applied) < 1e-2  # the step size is the method's estimate, far from the multiplier
    assert _logged(trainer) == pytest.approx(applied.applied, rel=1e-9)
    assert opt.param_groups[0]["lr"] == pytest.approx(_multiplier(path, 16))  # the multiplier itself is untouched


@pytest.mark.parametrize("path", ["optimizers", "trainer_schedule"])
def test_prodigy_logs_d_times_lr_of_each_step_against_the_reference(tmp_path, path):
    from adaptlr.reference import free as ref

    replay = _Replay()
    trainer = _free_trainer(tmp_path, adaptlr.Prodigy, {}, path, [replay])
    trainer.train()
    oracle = ref.Prodigy(replay.x0)
    want = []
    for t, grads in enumerate(replay.grads):
        oracle.lr = _multiplier(path, t)
        want.append(oracle.d * oracle.lr)  # lambda_k = d_k * lr: the d at the start of the step (no bias correction)
        oracle.step(grads)
    ds = [w / _multiplier(path, t) for t, w in enumerate(want)]
    assert max(ds) > 2 * min(ds)  # d grew: the logged values are not the multiplier times a constant
    assert _logged(trainer) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("path", ["optimizers", "trainer_schedule"])
def test_schedule_free_logs_its_warmup_scaled_lr(tmp_path, path):
    # Schedule-Free's step size is lr * min(1, (k + 1) / warmup_steps) (Defazio et al. 2024; schedulefree's warmup)
    trainer = _free_trainer(tmp_path, adaptlr.ScheduleFreeAdamW, {"lr": 0.01, "warmup_steps": 4}, path, [])
    trainer.train()
    want = [0.01 * _multiplier(path, k) * min(1.0, (k + 1) / 4) for k in range(16)]
    assert _logged(trainer) == pytest.approx(want, rel=1e-12)


def test_effective_lr_callback_warns_where_the_trainer_reads_group_lr(tmp_path):
    with pytest.warns(UserWarning, match="EffectiveLRCallback supports the Trainer's LambdaLR"):
        _trainer(
            tmp_path,
            [EffectiveLRCallback()],
            optimizer_cls_and_kwargs=(adaptlr.Prodigy, {}),
            args={"lr_scheduler_type": "reduce_lr_on_plateau", "save_strategy": "no", "max_steps": 4},
        ).train()


def test_controller_callback_validates_its_arguments():
    with pytest.raises(ValueError, match="controller"):
        ControllerCallback("NoSuchController")
    with pytest.raises(ValueError, match="JSON"):
        ControllerCallback("ReduceOnPlateau", min_lr=object())
