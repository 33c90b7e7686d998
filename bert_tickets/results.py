"""The shape of a ticket's result (`ticket.json`), declared once: the engine writes it through `TicketInfo`, and
`read_ticket_info` reads it (the report, the transfer tables, releases). After lm-evaluation-harness's
`result_schema.py`: a typed record, not a dict literal read by key in six modules.

Older files still read: every key added since the first release is `NotRequired`, and readers use `.get` for those.
"""


import json
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, TypedDict

from bert_tickets.errors import UserError

Arm = Literal["ticket", "dense"]  # the two arms of a ticket's evaluation, each fine-tuned once per seed
ARMS: tuple[Arm, ...] = ("ticket", "dense")


class MetricSummary(TypedDict):
    mean: float
    std: float
    values: list[float]  # one per seed, in the order of `seeds`
    failed: NotRequired[int | None]  # how many of the seeds' runs failed to learn (None: not recorded)


class FineTuningSummary(TypedDict):
    """One seed's fine-tuning beside its scores: did it learn, its losses, how far its weights moved."""

    seed: int
    failed: bool | None
    train_loss: float | None
    final_train_loss: float | None
    chance_loss: float | None
    chance_score: NotRequired[float | None]  # the best constant prediction's primary dev score
    eval_loss: float | None
    drift: float | None


class EvaluationCount(TypedDict):
    scored: int
    of: int | None  # the split's size (None: not known, e.g. a streamed split)


class TicketInfo(TypedDict, total=False):
    task: Required[str]
    model: Required[str]
    method: Required[str]
    sparsity: Required[float]  # measured on the mask (the target is `target_sparsity`)
    config: Required[dict[str, Any]]  # the non-default settings, `section.key -> value`
    target_sparsity: float
    scope: str
    per_matrix_sparsity: dict[str, float]
    collapsed_matrices: NotRequired[dict[str, float]]
    collapse_rule: NotRequired[str]
    schedule: str
    rate: float
    levels: list[float]
    rewind_step: int
    weights: str  # what the mask is fine-tuned from
    prunable: list[str]
    source_ticket: str | None
    mask_found_on: NotRequired[dict[str, Any] | None]  # a given ticket's mask: the task, method, sparsity it came from
    evaluation_examples: NotRequired[dict[str, EvaluationCount]]  # split -> examples scored, of how many
    pooler_in_mask: bool
    pooler_rule: str
    mask_keys: str
    precision: NotRequired[str]  # the autocast every fine-tuning of the run used: no (fp32), bf16 or fp16
    # what finding the mask cost: levels_trained, fine_tuning_steps, seconds: {fine_tuning, making_masks (None where
    # a mask was made before this was recorded)}; None for a given ticket's mask
    mask_cost: NotRequired[dict[str, Any] | None]
    seeds: list[int]
    primary_metric: str
    matching: bool | None  # None: fewer than two seeds, no verdict
    matching_rule: str
    metrics: dict[Arm, dict[str, MetricSummary]]  # arm -> metric -> summary
    runs: NotRequired[dict[Arm, list[FineTuningSummary]]]  # arm -> one per seed
    failed_rule: NotRequired[str]
    model_source: dict[str, Any]
    data_source: dict[str, Any]
    run_dir: str
    run_hash: str
    command: str
    bert_tickets_version: str


# What every ticket.json holds, whatever found the ticket; a file without them was not written by bert-tickets.
REQUIRED: dict[str, Any] = {"task": str, "model": str, "method": str, "sparsity": (int, float), "config": dict}
assert set(REQUIRED) == TicketInfo.__required_keys__


def read_ticket_info(path: Path) -> TicketInfo:
    """A ticket.json, checked for what every version wrote: one clear error for anything else."""
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a ticket description (not JSON: {exc})") from None
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(info, dict) or not isinstance(info.get(key), kind)]
    if wrong:
        raise UserError(f"{path} is not a ticket description written by bert-tickets (missing or wrong: "
                        f"{', '.join(wrong)})")
    if not 0 <= info["sparsity"] < 1:
        raise UserError(f"{path}: sparsity must be in [0, 1), got {info['sparsity']}")
    return info
