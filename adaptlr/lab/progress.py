"""Progress bars for a comparison (rich): one bar overall and one per job in training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import Job


class Bars:
    """rich progress: one bar overall and one per job in training (or nothing when ``enabled`` is false)."""

    def __init__(self, jobs: Sequence[Job], enabled: bool) -> None:
        self.jobs = jobs
        self.progress = None
        self.ids: dict[int, Any] = {}
        if enabled and jobs:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}", style="bold"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.overall = self.progress.add_task("all runs", total=len(jobs), loss="")

    def __enter__(self) -> Bars:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, kind: str, index: int, step: int, total: int, loss: float) -> None:
        """``step``: a job's progress (its bar appears with its first step); ``end``: its bar goes."""
        if self.progress is None:
            return
        if kind == "step":
            if index not in self.ids:
                job = self.jobs[index]
                self.ids[index] = self.progress.add_task(f"{job.task}: {job.label}"[:60], total=total, loss="")
            self.progress.update(self.ids[index], completed=step, loss=f"loss {loss:.4g}")
        elif kind == "end" and index in self.ids:
            self.progress.remove_task(self.ids.pop(index))

    def resolved(self) -> None:
        """One more job trained, found done, or failed."""
        if self.progress is not None:
            self.progress.advance(self.overall)
