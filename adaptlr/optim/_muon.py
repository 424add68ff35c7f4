from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .. import rules
from .._validation import check_bool, check_choice, check_count, check_real
from ..engines import is_dtensor
from ._base import Optimizer
from ._phase import Phase

# Keller Jordan's constants (torch.optim._muon)
EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5
_NS_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    r"""Muon's per-matrix lr: :math:`\gamma\sqrt{\max(1, A/B)}` ("original", Jordan) or
    :math:`0.2\gamma\sqrt{\max(A, B)}` ("match_rms_adamw", Liu et al., 2025) for an :math:`A \times B` matrix."""
    a, b = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, a / b))
    return lr * (0.2 * math.sqrt(max(a, b)))


#: the elementwise phases around the Newton-Schulz iteration (a matrix function of each whole update)
_MOMENTUM = Phase(
    rules.muon_momentum, "update g buf", writes="update buf", flags="nesterov small_dampening small_momentum"
)
_STEP = Phase(rules.decayed_step, "p u", writes="p", flags="use_decay")


class Muon(Optimizer):
    r"""Muon: momentum orthogonalised by Newton–Schulz (Jordan et al., 2024); matches ``torch.optim.Muon``.

    For 2-D parameters only (hidden layers' weight matrices; use AdamW for the rest):

    .. math::
        B_t = \mu B_{t-1} + (1 - \mu) g_t, \qquad
        \tilde B_t = g_t + \mu (B_t - g_t) \text{ (nesterov) or } B_t, \qquad
        O_t = \mathrm{NS}^{(a,b,c)}_k(\tilde B_t; \epsilon) \\
        p_t = p_{t-1}(1 - \gamma\lambda) - \mathrm{AdjustLR}(\gamma; A \times B)\, O_t

    (:math:`B` interpolates towards :math:`g` as ``torch.lerp``, as torch does). The elementwise phases are
    :func:`adaptlr.rules.muon_momentum` and :func:`adaptlr.rules.decayed_step`; the iteration is
    :func:`adaptlr.rules.newton_schulz`.

    Args:
        lr: :math:`\gamma` (default 1e-3). weight_decay: decoupled :math:`\lambda` (default 0.1).
        momentum: :math:`\mu` (default 0.95). nesterov (default True).
        ns_coefficients: :math:`(a, b, c)` (default (3.4445, -4.7750, 2.0315)). eps: :math:`\epsilon`
        (default 1e-7). ns_steps: :math:`k < 100` (default 5). adjust_lr_fn: ``None`` or ``"original"``
        (:math:`\gamma\sqrt{\max(1, A/B)}`) or ``"match_rms_adamw"`` (:math:`0.2\gamma\sqrt{\max(A, B)}`).
        ns_dtype (adaptlr's, keyword): the dtype of the iteration, ``"bfloat16"`` (default, torch's),
        ``"float16"``, ``"float32"`` or ``"float64"`` (bfloat16 matrix products are slow on many CPUs).
        foreach / fused: the engine of the elementwise phases (see :class:`adaptlr.Adam`).

    State: ``momentum_buffer``, as torch (no ``step``).

    A DTensor (FSDP2) parameter is orthogonalised as a whole: the update is gathered (``full_tensor()``), the
    iteration runs on the full matrix on every rank, and each rank keeps its own shard of the result.

    >>> opt = Muon([p for p in model.parameters() if p.ndim == 2], lr=0.02)  # doctest: +SKIP
    """

    state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: Any = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
        *,
        ns_dtype: str = "bfloat16",
        foreach: bool | None = None,
        fused: bool | None = None,
        nonfinite: str | None = None,
    ) -> None:
        check_real("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        check_real("momentum", momentum, 0.0, math.inf, high_open=True)
        check_bool("nesterov", nesterov)
        if not isinstance(ns_coefficients, (tuple, list)) or len(ns_coefficients) != 3:
            raise ValueError(f"Invalid ns_coefficients: expected three numbers (a, b, c), got {ns_coefficients!r}")
        for name, c in zip("abc", ns_coefficients):
            check_real(f"ns_coefficients ({name})", c, -math.inf, math.inf, low_open=True, high_open=True)
        check_real("eps", eps, 0.0, math.inf, high_open=True)
        check_count("ns_steps", ns_steps, 0, 99)
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(
                f"Adjust learning rate function {adjust_lr_fn} is not supported (expected None, "
                "'original' or 'match_rms_adamw')"
            )
        if isinstance(ns_dtype, torch.dtype):
            ns_dtype = str(ns_dtype).removeprefix("torch.")
        check_choice("ns_dtype", ns_dtype, sorted(_NS_DTYPES))
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            ns_dtype=ns_dtype,
        )
        super().__init__(params, defaults, foreach=foreach, fused=fused, nonfinite=nonfinite)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            if p.ndim != 2:
                raise ValueError(f"Muon only supports 2D parameters whereas we found a parameter with size: {p.size()}")
            if p.is_complex():  # (torch.optim.Muon's error, raised before anything runs rather than at the step)
                raise RuntimeError("Muon does not support complex parameters")

    def _step_group(self, group: dict[str, Any]) -> None:
        params, grads, bufs = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Muon does not support sparse gradients")
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            bufs.append(state["momentum_buffer"])
        if not params:
            return
        lr = float(self._lr(group))
        mu, nesterov = group["momentum"], group["nesterov"]
        # phase 1 (elementwise): the momentum buffer and the (nesterov) update
        updates = [torch.empty_like(g) for g in grads] if nesterov else bufs
        prefer = self._engine(group)
        values = dict(
            momentum=mu,
            one_minus_momentum=1 - mu,
            nesterov=nesterov,
            small_dampening=1 - mu < 0.5,
            small_momentum=mu < 0.5,
        )
        _MOMENTUM.apply({"update": updates, "g": grads, "buf": bufs}, values, prefer=prefer)
        # phase 2 (a matrix function of each whole update), then phase 3 (elementwise)
        wd = group["weight_decay"]
        dtype = _NS_DTYPES[group["ns_dtype"]]
        for p, update in zip(params, updates):
            whole = (
                update.full_tensor() if is_dtensor(update) else update
            )  # (a collective: the matrix function needs it whole)
            ortho = rules.newton_schulz(whole, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
            if is_dtensor(p):
                ortho = _shard_like(ortho, p)
            ortho = ortho.to(p.dtype)
            values = dict(step=adjusted_lr(lr, group["adjust_lr_fn"], p.shape), decay=1 - lr * wd, use_decay=True)
            _STEP.apply({"p": [p], "u": [ortho]}, values, prefer=prefer)


def _shard_like(full_tensor: torch.Tensor, like: Any) -> Any:
    """``full_tensor`` (the same on every rank) as a DTensor laid out as ``like``, without communication."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full_tensor, like.device_mesh, like.placements, src_data_rank=None)
