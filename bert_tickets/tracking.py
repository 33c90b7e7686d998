"""Experiment tracking: one wandb run per fine-tuning (an IMP level, an evaluation seed, a transfer cell),
all in one project and grouped by study, each with the full settings of its run attached.

A `find` is its own study unless `--study` names one; a transfer matrix groups its source tickets and cells
under one study. Only the main process logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LogFn = Callable[[dict[str, float], int | None], None]  # what a fine-tuning logs through


class TrackedRun:
    """One wandb run: called with metrics to log them; `close` records the final scores in the run's summary and
    the mask the fine-tuning kept fixed as an artifact."""

    def __init__(self, run: Any):
        self._run = run

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._run.log(metrics, step=step)

    def close(self, final: dict[str, float], mask_file: Path | None = None, mask_name: str = "",
              mask_metadata: dict[str, Any] | None = None) -> None:
        self._run.summary.update({f"final/{name}": value for name, value in final.items()})
        if mask_file is not None and mask_file.exists():
            import wandb

            artifact = wandb.Artifact(mask_name, type="mask", metadata=mask_metadata or {},
                                      description="the fine-tuning's fixed mask: booleans (True = kept) keyed by the "
                                                  "encoder's parameter names (safetensors)")
            artifact.add_file(str(mask_file))
            self._run.log_artifact(artifact)


class Tracker:
    def __init__(self, enabled: bool, project: str, study: str, settings: dict[str, Any], directory: Path):
        self.enabled, self.project, self.study = enabled, project, study
        self.settings, self.directory = settings, directory

    @contextmanager
    def run(self, name: str, job_type: str, **details: Any) -> Iterator[TrackedRun | None]:
        """A wandb run around one fine-tuning, its config the run's full resolved settings; yields it (None when
        tracking is off)."""
        if not self.enabled:
            yield None
            return
        import wandb

        self.directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=self.project, group=self.study, job_type=job_type, name=name,
                         config=self.settings | details, dir=str(self.directory), reinit="finish_previous")
        try:
            yield TrackedRun(run)
        finally:
            run.finish()
