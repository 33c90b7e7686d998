"""Every file and folder name of a run folder, defined once (after open_lth's `foundations/paths.py`).

A run folder (`<output_dir>/<task>/<method>_<hash>/`) holds:

    config.json                          the run's settings (its hash names the folder)
    rewind_point.safetensors             the encoder at `pruning.rewind_step` (rewinding to a training step)
    initial_head.safetensors             the first level's head (`pruning.keep_head`)
    level_00_sparsity_0.0000/            one folder per level of the sparsity schedule:
        mask.safetensors                   the level's mask (level 0 is dense and has none)
        metrics.json                       the fine-tuning's scores: written last, it marks the level done
        metrics.checkpoint/                while the level trains: its training state, to resume after a kill
        sparsity.json                      the mask's sparsity, overall and per matrix
        mask_cost.json                     how long making the mask took (calibration, scoring, sorting);
                                           ticket.json's `mask_cost` adds the levels it was pruned from
        trained_prunable.safetensors       the trained prunable weights the next mask is pruned from
        trained_model.safetensors          the whole trained network (methods that do not rewind go on from it)
        trained_head.safetensors           the trained task head, which the next level starts from
                                           (`pruning.carry_head`, the authors' code)
    tickets/sparsity_0.5000/             the ticket: mask.safetensors, ticket.json, comparison.json,
        seeds/seed_1.json                  and the evaluation's other seeds
        finetuned/seed_0.safetensors       a seed's fine-tuned task model (`training.keep_finetuned`)
    workers/                             local workers' logs and status files (what the parent reports)
    .lock                                one process at a time trains in the folder
and beside the run folders of a task, `dense_<hash>/seed_<n>.json`: dense fine-tunings, shared by every method.
Sparsities in names are exact (`sparsity_name`): 4 decimals where that is the whole value, every digit otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

CONFIG = "config.json"
MASK = "mask.safetensors"
METRICS = "metrics.json"
SPARSITY = "sparsity.json"
TICKET_INFO = "ticket.json"
COMPARISON = "comparison.json"
MASK_COST = "mask_cost.json"


# with seed_<n>.json: the records a run folder holds
RECORDS = {CONFIG, METRICS, SPARSITY, TICKET_INFO, COMPARISON, MASK_COST}


def is_record(path: Path) -> bool:
    """A record this toolkit writes in a run folder, by its exact name (a user's notes.json is never one)."""
    return path.name in RECORDS or re.fullmatch(r"seed_[0-9]+\.json", path.name) is not None


def sparsity_name(sparsity: float) -> str:
    """A sparsity in a file or repository name, exactly: 4 decimals where they are the whole value (0.5000, the
    names every run folder has used), else every digit, so that two sparsities never share a name by rounding."""
    four = f"{sparsity:.4f}"
    return four if float(four) == sparsity else repr(float(sparsity))


def sparsity_percent(sparsity: float) -> str:
    """A sparsity in percent for a release's name: 50, 50.4, 50.004 (ten significant digits, never whole percent)."""
    return f"{100 * sparsity:.10g}"


def run(output_dir: str | Path, task: str, method: str, run_hash: str) -> Path:
    return Path(output_dir) / task / f"{method}_{run_hash}"


def output_dir_of(root: Path) -> Path:
    """The output folder a run folder (`run`) lies in, wherever the whole tree has been moved."""
    return root.parents[1]


def config(root: Path) -> Path:
    return root / CONFIG


def rewind_point(root: Path) -> Path:
    return root / "rewind_point.safetensors"


def initial_head(root: Path) -> Path:
    return root / "initial_head.safetensors"


def level(root: Path, k: int, sparsity: float) -> Path:
    return root / f"level_{k:02d}_sparsity_{sparsity_name(sparsity)}"


def mask(folder: Path) -> Path:
    """A level's or a ticket's mask."""
    return folder / MASK


def mask_cost(level_dir: Path) -> Path:
    """How long making a level's mask took (its calibration, scoring and sorting; not the training before it)."""
    return level_dir / MASK_COST


def metrics(level_dir: Path) -> Path:
    return level_dir / METRICS


def sparsity(level_dir: Path) -> Path:
    return level_dir / SPARSITY


def trained_prunable(level_dir: Path) -> Path:
    """The pruning frontier: kept until the next level's mask is made (at the last level of IMP, to extend it)."""
    return level_dir / "trained_prunable.safetensors"


def trained_model(level_dir: Path) -> Path:
    return level_dir / "trained_model.safetensors"


def trained_head(level_dir: Path) -> Path:
    return level_dir / "trained_head.safetensors"


def ticket(root: Path, sparsity: float) -> Path:
    return root / "tickets" / f"sparsity_{sparsity_name(sparsity)}"


def run_of_ticket(ticket_dir: Path) -> Path:
    """The run folder a ticket folder (`ticket`) lies in, wherever the run has been moved."""
    return ticket_dir.parents[1]


def output_dir_of_ticket(ticket_dir: Path) -> Path:
    return output_dir_of(run_of_ticket(ticket_dir))


def ticket_info(ticket_dir: Path) -> Path:
    return ticket_dir / TICKET_INFO


def comparison(ticket_dir: Path) -> Path:
    return ticket_dir / COMPARISON


def ticket_seed(ticket_dir: Path, seed: int) -> Path:
    return ticket_dir / "seeds" / f"seed_{seed}.json"


def finetuned(ticket_dir: Path, seed: int) -> Path:
    """An evaluation seed's fine-tuned task model (`training.keep_finetuned`), for `push --fine-tuned`."""
    return ticket_dir / "finetuned" / f"seed_{seed}.safetensors"


def dense(root: Path, dense_hash: str) -> Path:
    """Dense fine-tunings depend on model, data and recipe only: the runs of every method on a task share them."""
    return root.parent / f"dense_{dense_hash}"


def dense_seed(dense_dir: Path, seed: int) -> Path:
    return dense_dir / f"seed_{seed}.json"


def checkpoint(result: Path) -> Path:
    """The training state of the fine-tuning whose record goes to `result` (e.g. a level's metrics.json), while it
    runs: resumed after a kill, deleted once the record is written."""
    return result.with_name(f"{result.stem}.checkpoint")


def workers(folder: Path) -> Path:
    """Logs of the local worker processes of a run, a transfer matrix or a study."""
    return folder / "workers"


def transfer(output_dir: str | Path, sparsity: float, settings_hash: str) -> Path:
    """A transfer matrix's folder (its tables and figure), beside the run folders its cells use."""
    return Path(output_dir) / "transfer" / f"sparsity_{sparsity_name(sparsity)}_{settings_hash}"


# A study folder: study.yaml (the spec as it ran), precision.json (the precision its "auto" resolved to where it first
# ran), runs/ (its engine runs and transfer matrix), report/.
STUDY_SPEC = "study.yaml"
STUDY_PRECISION = "precision.json"


def study_runs(study_dir: Path) -> Path:
    return study_dir / "runs"


def study_report(study_dir: Path) -> Path:
    return study_dir / "report"
