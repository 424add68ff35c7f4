"""Matplotlib figures for the lab (imported lazily: ``import adaptlr`` never imports matplotlib).

Every function draws on a fresh ``matplotlib.figure.Figure`` (no pyplot, so no window and no global state),
writes it atomically (a temporary file renamed into place) and returns the path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["lab_curves", "lab_lr", "lab_profile", "lab_sensitivity", "save"]


def _figure(ncols: int = 1, size: tuple[float, float] = (7.0, 4.0), n: int = 0) -> tuple[Any, Any]:
    """A figure with ``ncols`` axes; more than 10 curves (``n``) cycle through tab20's 20 colours."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(1, ncols)
    if n > 10:
        for ax in np.atleast_1d(axes):
            ax.set_prop_cycle(color=colormaps["tab20"].colors)
    return fig, axes


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _band(ax: Any, x: np.ndarray, runs: np.ndarray, label: str, color: Any = None, ls: str = "-") -> None:
    """Median over seeds (rows) with the interquartile band."""
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(runs, axis=0)
            lo, hi = np.nanpercentile(runs, [25, 75], axis=0)
    (line,) = ax.plot(x, med, label=label, color=color, lw=1.4, ls=ls)
    if runs.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)


def _legend(ax: Any, n: int) -> None:
    ax.legend(fontsize="x-small" if n > 6 else "small", ncol=2 if n > 8 else 1)


def lab_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    task: str = "",
    metric: str = "metric",
    target: float | None = None,
    dashed: Iterable[str] = (),
) -> Path:
    """Train loss (log scale) and test metric against step: median over seeds with the IQR band; the methods
    in ``dashed`` (the learning-rate-free ones) are drawn dashed."""
    dashed = set(dashed)
    fig, (ax1, ax2) = _figure(2, (12.0, 4.5), len(curves))
    for m, c in curves.items():
        ls = "--" if m in dashed else "-"
        _band(ax1, c["step"], c["train_loss"], m, ls=ls)
        if len(c["eval_step"]):
            _band(ax2, c["eval_step"], c["metric"], m, ls=ls)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("train loss (mean since last point)")
    ax1.set_title(f"{task}: train loss (median, IQR over seeds)")
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"test {metric}")
    ax2.set_title(f"{task}: test {metric}" + (" (dashed: learning-rate-free)" if dashed & set(curves) else ""))
    if target is not None:
        ax2.axhline(target, color="gray", ls="--", lw=0.8, label="target")
    if metric == "accuracy":
        lo = min((np.nanmin(c["metric"]) for c in curves.values() if c["metric"].size), default=0.0)
        ax2.set_ylim(max(lo, 0.5) if np.isfinite(lo) else 0.0, 1.0)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    _legend(ax2, len(curves))
    return save(fig, path)


def lab_lr(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    task: str = "",
    dashed: Iterable[str] = (),
) -> Path:
    """Effective learning rate against step, log scale: one line per seed (in the method's colour), so a
    method that chooses its lr per seed (Auto, the learning-rate-free ones) shows each seed's choice, never a
    median that no seed used; ``dashed`` as in lab_curves."""
    dashed = set(dashed)
    fig, ax = _figure(1, (7.5, 4.5), len(curves))
    for m, c in curves.items():
        color = None
        seeds = c.get("seed", range(len(c["eff_lr"])))
        for seed, seed_lr in zip(seeds, np.atleast_2d(c["eff_lr"]), strict=False):
            if not np.isfinite(seed_lr).any():
                continue
            (line,) = ax.plot(
                c["step"],
                seed_lr,
                color=color,
                lw=1.2,
                ls="--" if m in dashed else "-",
                label=m if color is None else None,
            )
            line.set_gid(f"{m} seed {seed}")
            color = line.get_color()
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("effective learning rate")
    ax.set_title(f"{task}: effective lr (schedule x controller x d), one line per seed")
    ax.grid(alpha=0.3)
    _legend(ax, len(curves))
    return save(fig, path)


def lab_sensitivity(
    groups: Mapping[str, Sequence[tuple[float, tuple[float, float, float]]]],
    path: str | Path,
    *,
    task: str = "",
    metric: str = "metric",
) -> Path:
    """Final metric (median, IQR) against the optimizer's lr, one line per swept method."""
    fig, ax = _figure(1, (7.0, 4.5))
    for name, pts in groups.items():
        lrs = np.array([p[0] for p in pts])
        q = np.array([p[1] for p in pts])
        (line,) = ax.plot(lrs, q[:, 0], marker="o", label=name)
        ax.fill_between(lrs, q[:, 1], q[:, 2], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"final test {metric}")
    ax.set_title(f"{task}: lr sensitivity (median, IQR over seeds)")
    ax.grid(alpha=0.3)
    _legend(ax, len(groups))
    return save(fig, path)


def lab_profile(prof: Mapping[str, Any], path: str | Path) -> Path:
    """Performance profile: fraction of tasks solved within tau x the fastest method's cost."""
    fig, ax = _figure(1, (7.0, 4.5), len(prof["rho"]))
    for m, rho in prof["rho"].items():
        ax.step(prof["taus"], rho, where="post", label=m)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    top = float(np.max(prof["taus"])) if len(prof["taus"]) else 1.0
    ax.set_xticks([t for t in (1, 1.5, 2, 3, 4, 6, 8, 16, 32, 64) if t <= top])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"tau (x the fastest method's {'steps' if prof.get('by', 'steps') == 'steps' else 'time'} to target)")
    ax.set_ylabel("fraction of tasks reaching the target")
    ax.set_title("performance profile")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center right")
    return save(fig, path)
