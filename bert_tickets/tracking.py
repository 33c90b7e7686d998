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

LogFn = Callable[[dict[str, float], int | None], None]


class Tracker:
    def __init__(self, enabled: bool, project: str, study: str, settings: dict[str, Any], directory: Path):
        self.enabled, self.project, self.study = enabled, project, study
        self.settings, self.directory = settings, directory

    @contextmanager
    def run(self, name: str, job_type: str, **details: Any) -> Iterator[LogFn | None]:
        """A wandb run around one fine-tuning; yields its log function (None when tracking is off)."""
        if not self.enabled:
            yield None
            return
        import wandb

        self.directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=self.project, group=self.study, job_type=job_type, name=name,
                         config=self.settings | details, dir=str(self.directory), reinit="finish_previous")
        try:
            yield lambda metrics, step=None: run.log(metrics, step=step)
        finally:
            run.finish()
