r""":class:`AutoLRCallback`: :class:`adaptlr.Auto` in the Hugging Face ``Trainer``, on the public race API
(:mod:`adaptlr.auto`).

Use it as (``from adaptlr.integrations.transformers_auto import AutoLRCallback``)::

    opt = adaptlr.AdamW(model.parameters())  # (or optimizer_cls_and_kwargs=(adaptlr.AdamW, {}))
    trainer = Trainer(model, TrainingArguments(..., max_steps=2_000), train_dataset=train, eval_dataset=val,
                      optimizers=(opt, None))
    auto = AutoLRCallback(Auto()).attach(trainer)
    trainer.train()
    auto.lr, auto.committed   # the raced lr; "final", "watch", "branch" or "start" (what the model holds)
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .._validation import check_real
from ..auto import LR_SCALE, Auto, Plan, run_schedule
from .transformers import OptimizerSchedule, _inner, _scheduler

__all__ = ["AutoLRCallback"]


# model -> the Trainer a callback was attached to, for the callback the Trainer rebuilds from a checkpoint
# (``restore_callback_states_from_checkpoint=True`` replaces it by ``AutoLRCallback(**args)``)
_TRAINERS: weakref.WeakKeyDictionary[torch.nn.Module, Any] = weakref.WeakKeyDictionary()


class _AutoSchedule(OptimizerSchedule):
    """:class:`OptimizerSchedule` put in the Trainer's scheduler slot in place of the ``LambdaLR`` it made; its
    checkpoint also loads into that ``LambdaLR`` (which a resumed Trainer builds again before this callback
    replaces it): ``lr_lambdas`` of ``None`` leave its lambdas as they are."""

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "lr_lambdas": [None] * len(self.optimizer.param_groups)}


class AutoLRCallback(TrainerCallback, ExportableState):
    r""":class:`adaptlr.Auto` in the ``Trainer``: race the learning-rate grid when training begins, then let the
    Trainer train the winner for the rest of ``max_steps`` on Auto's schedule.

    1. At ``on_train_begin``: ``Auto.fit(..., race_only=True)`` with the Trainer's own loss
       (``trainer.compute_loss``) over its training dataloader, with its ``gradient_accumulation_steps``,
       ``max_grad_norm`` (when > 0) and mixed precision (``bf16``, ``fp16``) applied in the race as the Trainer
       applies them after it, on its optimizer's param groups (their ``weight_decay`` kept); scored on the
       ``eval_dataset`` by the same loss (in eval mode; ``compute_metrics`` is not used).
    2. Commit: the model holds the winner at the branch point (step :math:`s_2` of ``plan.rung2``); the
       Trainer's optimizer gets the winner's state and Auto's run schedule (``set_lr``, on the optimizer's own
       clock, which stands at :math:`s_2`); the Trainer's lr scheduler (a ``LambdaLR`` it made) is replaced by
       an :class:`~adaptlr.integrations.transformers.OptimizerSchedule`, so the ``learning_rate`` it logs is the
       lr applied; the Trainer's ``state.max_steps`` becomes ``max_steps - s2``, so the run's total is the
       ``max_steps`` Auto planned (``state.global_step`` counts the Trainer's own steps).
    3. At ``on_train_end`` (``Auto.keep_best``): the best validated of the end of the run, the winner's annealed
       branch and the start is committed (:meth:`adaptlr.auto.Commit.finish`; save the model after
       ``train()``: the last checkpoint holds the end of the run), and the race's state store is released.

    Resuming (``trainer.train(resume_from_checkpoint=...)``) does not race again: the lr and the plan saved in
    the checkpoint's ``trainer_state.json`` set the schedule again on the restored optimizer's clock (the
    keep-best comparison is not made after a resume: the race's states are gone).

    Requirements (each refused in one clear line otherwise): the callback attached to its Trainer
    (:meth:`attach`); one process; an optimizer of Auto's inner class (``adaptlr.AdamW`` by default); the
    Trainer's own ``LambdaLR`` schedules or an ``OptimizerSchedule`` in the scheduler slot; one ``eval_dataset``.

    Args:
        auto: the :class:`adaptlr.Auto` (default ``Auto()``).
        val_cost: one evaluation pass's cost in training steps (default: measured).

    Attributes: ``result`` (the race's :class:`adaptlr.AutoResult`, None after a resume), ``lr``, ``plan`` (a
    dict), ``committed`` (``"final"``, ``"watch"``, ``"branch"`` or ``"start"`` once training ended),
    ``val_score``, ``watched`` (the run's ``(step, score)`` at its watch points), ``cost`` (runs of ``max_steps``:
    race, Trainer steps and validation).
    """

    def __init__(self, auto: Any = None, val_cost: float | None = None) -> None:
        auto = Auto() if auto is None else auto
        if not isinstance(auto, Auto):
            raise TypeError(f"Invalid auto: {auto!r} (expected an adaptlr.Auto)")
        if val_cost is not None:
            check_real("val_cost", val_cost, 0.0)
        self.auto, self.val_cost = auto, val_cost
        self.trainer: Any = None
        self.result: Any = None
        self.saved: dict[str, Any] | None = None  # lr, plan, tail, cooldown, scales, cost_steps (checkpointed)
        self.committed: str | None = None
        self.val_score = math.inf
        self.watched: list[tuple[int, float]] = []

    def attach(self, trainer: Any) -> AutoLRCallback:
        """Bind this callback to ``trainer`` (whose loss and evaluation data it races on) and add it to the
        trainer's callbacks (first, so its ``state.max_steps`` is what the others see); returns ``self``."""
        if not hasattr(trainer, "compute_loss") or not hasattr(trainer, "callback_handler"):
            raise TypeError(f"Invalid trainer: {type(trainer).__name__} (expected a transformers.Trainer)")
        self.trainer = trainer
        callbacks = trainer.callback_handler.callbacks
        if not any(cb is self for cb in callbacks):
            callbacks.insert(0, self)
        _TRAINERS[trainer.model] = trainer
        return self

    @property
    def lr(self) -> float | None:
        return self.saved["lr"] if self.saved else None

    @property
    def plan(self) -> dict[str, Any] | None:
        return dict(self.saved["plan"]) if self.saved else None

    @property
    def cost(self) -> float:
        return self.saved["cost_steps"] / self.saved["plan"]["steps"] if self.saved else 0.0

    # ---- ExportableState: the race's choice goes into each checkpoint's trainer_state.json -------------------
    def state(self) -> dict[str, Any]:
        return {"args": {"val_cost": self.val_cost}, "attributes": {"saved": self.saved}}

    @staticmethod
    def _saved_state(state: Any) -> dict[str, Any] | None:
        entry = (getattr(state, "stateful_callbacks", None) or {}).get(AutoLRCallback.__name__)
        if isinstance(entry, list):
            entry = entry[-1] if entry else None
        return ((entry or {}).get("attributes") or {}).get("saved") if isinstance(entry, dict) else None

    # ---- what the Trainer says -------------------------------------------------------------------------------
    def _optimizer(self, args: Any, optimizer: Any, name: str | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, if it is of Auto's inner class (``name``: the class a resumed race chose)."""
        if args.world_size != 1:
            raise ValueError(
                f"AutoLRCallback races in one process (world_size {args.world_size}); under DDP use "
                "adaptlr.Auto.fit with process_group= (every rank decides together)"
            )
        opt = _inner(optimizer) if optimizer is not None else None
        want = _name(self.auto.inner) if name is None else name
        if opt is None or _name(type(opt)) != want:
            got = "none" if opt is None else _name(type(opt))
            raise TypeError(
                f"AutoLRCallback needs the Trainer's optimizer to be an {want} (Auto's inner optimizer): pass "
                f"optimizers=({want}(model.parameters()), None) or optimizer_cls_and_kwargs=({want}, {{}}); got {got}"
            )
        return opt

    def _trainer(self, model: Any) -> Any:
        trainer = self.trainer if self.trainer is not None else _TRAINERS.get(model)
        if trainer is None:
            raise RuntimeError(
                "AutoLRCallback is not attached to its Trainer: call AutoLRCallback(...).attach(trainer) before "
                "trainer.train() (it races on the trainer's compute_loss and eval_dataset)"
            )
        return trainer

    def _take_scheduler(self, trainer: Any, lr_scheduler: Any, opt: torch.optim.Optimizer) -> None:
        """Leave the lr to the optimizer's schedule: an :class:`OptimizerSchedule` in the scheduler slot."""
        sched = _scheduler(lr_scheduler)
        if isinstance(sched, OptimizerSchedule):
            return
        if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            raise TypeError(
                f"AutoLRCallback sets the optimizer's lr schedule itself and cannot take over the lr scheduler "
                f"{type(sched).__name__}: use a Trainer lr_scheduler_type other than 'reduce_lr_on_plateau', or "
                "optimizers=adaptlr.integrations.transformers.optimizers(opt)"
            )
        trainer.lr_scheduler = trainer.callback_handler.lr_scheduler = _AutoSchedule(opt)

    def _step(self, trainer: Any, args: Any) -> dict[str, Any]:
        """The Trainer's loss, accumulation, clipping and precision as :meth:`Auto.fit`'s step arguments."""

        def step_fn(model: Any, batch: Any) -> torch.Tensor:
            batch = dict(batch) if isinstance(batch, Mapping) else batch  # (compute_loss may pop "labels")
            with trainer.compute_loss_context_manager():
                return trainer.compute_loss(model, batch)

        amp = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
        return {
            "step_fn": step_fn,
            "amp": amp,
            "accumulate": int(args.gradient_accumulation_steps),
            "max_grad_norm": float(args.max_grad_norm) if args.max_grad_norm and args.max_grad_norm > 0 else None,
        }

    @staticmethod
    def _val_batches(trainer: Any) -> list[Any]:
        if trainer.eval_dataset is None:
            raise ValueError("AutoLRCallback needs an eval_dataset in the Trainer to race on (it scores its loss)")
        if isinstance(trainer.eval_dataset, dict):
            raise ValueError(
                f"AutoLRCallback scores on one eval_dataset (got a dict of {len(trainer.eval_dataset)}: "
                f"{sorted(trainer.eval_dataset)})"
            )
        batches = list(trainer.get_eval_dataloader())
        if not batches:
            raise ValueError("AutoLRCallback: the evaluation dataloader is empty")
        return batches

    # ---- the race, the commit and the resume -----------------------------------------------------------------
    def _set_schedule(self, opt: torch.optim.Optimizer, lr: float, plan: Plan, scales: list[float]) -> None:
        from .. import schedules as S

        schedule = run_schedule(lr, plan)
        for i, (g, scale) in enumerate(zip(opt.param_groups, scales, strict=True)):
            g.pop(LR_SCALE, None)  # (the race's key: not left in the trainer's groups)
            g.pop("initial_lr", None)  # (set by the LambdaLR this callback replaced)
            opt.set_lr(schedule if scale == 1.0 else S.scale(schedule, scale), group_index=i)  # type: ignore[attr-defined]

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        lr_scheduler: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.global_step > 0:  # resumed: the race ran before; the optimizer state is restored
            saved = self._saved_state(state) or self.saved  # (the checkpoint's; or as the Trainer restored it)
            if saved is None:
                raise RuntimeError(
                    f"AutoLRCallback: resuming at step {state.global_step} from a checkpoint without "
                    "AutoLRCallback's state (the race's choice) in its trainer_state.json"
                )
            if state.max_steps != saved["plan"]["steps"]:
                raise ValueError(
                    f"AutoLRCallback: resumed with max_steps {state.max_steps}, but the race planned a run of "
                    f"{saved['plan']['steps']} steps (resume with the max_steps of the run that raced)"
                )
            opt, trainer = self._optimizer(args, optimizer, saved["optimizer"]), self._trainer(model)
            self._take_scheduler(trainer, lr_scheduler, opt)
            self.saved = dict(saved)
        else:
            opt, trainer = self._optimizer(args, optimizer), self._trainer(model)
            self._take_scheduler(trainer, lr_scheduler, opt)  # (before the race: a refusal costs nothing)
            self._race(trainer, args, state, model, opt, train_dataloader)
        plan = Plan.of(self.saved["plan"], self.saved["tail"], self.saved["cooldown"])
        self._set_schedule(opt, self.saved["lr"], plan, self.saved["scales"])
        state.max_steps = plan.steps - plan.rung2

    def _race(
        self, trainer: Any, args: Any, state: Any, model: Any, opt: torch.optim.Optimizer, train_dataloader: Any
    ) -> None:
        steps = int(state.max_steps)
        if steps < 1:
            raise ValueError(f"AutoLRCallback needs max_steps > 0, the budget Auto plans (got {steps})")
        groups = [
            {"params": list(g["params"]), **({"weight_decay": g["weight_decay"]} if "weight_decay" in g else {})}
            for g in opt.param_groups
        ]
        result = self.auto.fit(
            model,
            train_dataloader if train_dataloader is not None else trainer.get_train_dataloader(),
            self._val_batches(trainer),
            steps=steps,
            val_cost=self.val_cost,
            params=groups,
            race_only=True,
            **self._step(trainer, args),
        )
        scales = [float(g.get(LR_SCALE, 1.0)) for g in result.optimizer.param_groups]
        opt.load_state_dict(result.optimizer.state_dict())
        result.optimizer = opt  # the winner's optimizer from here on (the race's copy is let go)
        commit = result.commit
        accelerator_scaler = getattr(getattr(trainer, "accelerator", None), "scaler", None)
        if commit is not None and commit.scaler is not None and accelerator_scaler is not None:
            accelerator_scaler.load_state_dict(commit.scaler.state_dict())  # (float16: the winner's loss scale)
        self.result = result
        self.saved = {
            "optimizer": _name(type(opt)),
            "lr": float(result.lr),
            "plan": result.plan.as_dict(),
            "tail": self.auto.tail,
            "cooldown": self.auto.cooldown,
            "scales": scales,
            "cost_steps": float(result.cost_steps),
        }

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.saved is not None:
            self.saved["cost_steps"] += 1.0
        commit = self.result.commit if self.result is not None else None
        if commit is not None and model is not None and commit.due(int(state.global_step)):  # (a watch point)
            race, rows = commit.race, commit.race.meter.val_rows
            commit.observe(model, int(state.global_step))
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            if self.saved is not None:
                self.saved["cost_steps"] += (race.meter.val_rows - rows) * race.validator.row_cost(device)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        commit = self.result.commit if self.result is not None else None
        if commit is None:
            self.committed = "final"
            return
        race = commit.race
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        before = race.meter.cost_steps(race.validator.row_cost(device))
        try:
            self.committed = commit.finish(model, ended=state.global_step >= state.max_steps)
        finally:
            race.store.close()
        self.val_score, self.watched = commit.val_score, list(commit.history)
        self.saved["cost_steps"] += race.meter.cost_steps(race.validator.row_cost(device)) - before
        for text in commit.warnings:
            warnings.warn(f"AutoLRCallback: {text}", stacklevel=2)
        self.result.commit = None


def _name(cls: type) -> str:
    """``adaptlr.AdamW`` for adaptlr's classes (as exported), else the module-qualified name."""
    import adaptlr

    if getattr(adaptlr, cls.__name__, None) is cls:
        return f"adaptlr.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"
