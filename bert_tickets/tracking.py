"""Experiment tracking, as Hugging Face's `report_to` does it: one wandb run and/or one TensorBoard event folder
per fine-tuning (an IMP level, an evaluation seed, a transfer cell), each with the full settings of its run.

wandb: all in one project, grouped by study (a `find` is its own study unless `--study` names one; a transfer
matrix groups its source tickets and cells), files under $WANDB_DIR where set, else the run folder. TensorBoard:
`<run folder>/tensorboard/<fine-tuning>/` (`tensorboard --logdir <run folder>/tensorboard`), the settings as its
hyperparameters. Only the main process logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bert_tickets.errors import UserError

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


class TensorBoardRun:
    """One fine-tuning's TensorBoard events: its metrics as scalars, its settings and final scores as hparams."""

    def __init__(self, folder: Path, settings: dict[str, Any]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise UserError("report_to tensorboard needs the tensorboard package: pip install "
                            "'bert-tickets[tensorboard]'") from None
        self._writer, self._settings = SummaryWriter(log_dir=str(folder)), settings

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, global_step=step)

    def close(self, final: dict[str, float], *_: Any, **__: Any) -> None:
        scalars = (bool, int, float, str)
        hparams = {k: v if isinstance(v, scalars) else str(v) for k, v in self._settings.items()}
        self._writer.add_hparams(hparams, {f"final/{name}": value for name, value in final.items()}, run_name=".")

    def finish(self) -> None:
        self._writer.close()


class TrackedRuns:
    """The fine-tuning's runs in every backend asked for, called and closed as one."""

    def __init__(self, runs: list[Any]):
        self.runs = runs

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        for run in self.runs:
            run(metrics, step)

    def close(self, final: dict[str, float], mask_file: Path | None = None, mask_name: str = "",
              mask_metadata: dict[str, Any] | None = None) -> None:
        for run in self.runs:
            run.close(final, mask_file, mask_name, mask_metadata)


REPORT_TO = {"none": (), "wandb": ("wandb",), "tensorboard": ("tensorboard",), "all": ("wandb", "tensorboard")}


class Tracker:
    def __init__(self, report_to: str, project: str, study: str, settings: dict[str, Any], directory: Path):
        self.backends, self.project, self.study = REPORT_TO[report_to], project, study
        self.settings, self.directory = settings, directory

    @contextmanager
    def run(self, name: str, job_type: str, **details: Any) -> Iterator[TrackedRuns | None]:
        """The fine-tuning's runs, their config the run's full resolved settings; yields them (None when tracking
        is off)."""
        if not self.backends:
            yield None
            return
        with ExitStack() as finish:
            runs: list[Any] = []
            if "wandb" in self.backends:
                runs.append(finish.enter_context(self._wandb_run(name, job_type, details)))
            if "tensorboard" in self.backends:
                board = TensorBoardRun(self.directory / "tensorboard" / name, self.settings | details)
                finish.callback(board.finish)
                runs.append(board)
            yield TrackedRuns(runs)

    @contextmanager
    def _wandb_run(self, name: str, job_type: str, details: dict[str, Any]) -> Iterator[TrackedRun]:
        import wandb

        directory = Path(os.environ.get("WANDB_DIR") or self.directory)  # as wandb itself reads it, where set
        directory.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=self.project, group=self.study, job_type=job_type, name=name,
                         config=self.settings | details, dir=str(directory), reinit="finish_previous")
        try:
            yield TrackedRun(run)
        finally:
            run.finish()
