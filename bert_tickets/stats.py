"""The statistics every table uses: one matching rule, paired differences by seed, and failed runs kept apart.

One place, so that the report, the command line's verdict, the transfer table and ticket.json can never disagree
on what "matching" means, and a score over one seed is never shown as if it had a spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MATCHING_RULE = ("matching: the ticket's mean >= dense's mean − one standard deviation of dense, both over all "
                 "the same seeds, at least 2 (Chen et al. 2020), failed runs included; never where more of the "
                 "ticket's runs failed than dense's, or all of them (one dense or ticket seed: n/a)")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for one value: callers show n = 1, never ± 0)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def is_matching(ticket: dict[str, Any], dense: dict[str, Any]) -> bool | None:
    """The paper's criterion on two {mean, std, values, failed} summaries, over every seed; None when either arm
    has fewer than two seeds. A run that learned nothing (`failed`, `training.FAILED_RULE`) stays in the mean, and
    an arm whose runs failed more often than dense's (or all failed) is not matching whatever its mean."""
    seeds, dense_seeds = len(ticket.get("values", [])), len(dense.get("values", []))
    if seeds < 2 or dense_seeds < 2:
        return None
    failed, dense_failed = ticket.get("failed"), dense.get("failed")
    if failed is not None and (failed == seeds or failed / seeds > (dense_failed or 0) / dense_seeds):
        return False
    return bool(ticket["mean"] >= dense["mean"] - dense["std"])


def failed_count(runs: Sequence[dict[str, Any]]) -> int | None:
    """How many of an arm's fine-tunings failed to learn; None when none of their records says (older runs)."""
    said = [r.get("failed") for r in runs if r.get("failed") is not None]
    return sum(bool(f) for f in said) if said else None


def matching_mark(matching: bool | None) -> str:
    return {True: "matching", False: "not matching", None: "n/a (one seed)"}[matching]


@dataclass(frozen=True)
class Paired:
    """a − b over the seeds both arms ran: mean, sample std and n of the per-seed differences."""

    mean: float
    std: float
    n: int
    seeds: tuple[int, ...]

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{scale * self.mean:+.{digits}f} (n = 1)"
        return f"{scale * self.mean:+.{digits}f} ± {scale * self.std:.{digits}f} (n = {self.n})"


def paired(a: dict[int, float], b: dict[int, float]) -> Paired:
    """The per-seed differences a[s] − b[s] over the seeds both hold (the same seed: same head and data order)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return Paired(float("nan"), float("nan"), 0, ())
    mean, std = mean_std([a[s] - b[s] for s in seeds])
    return Paired(mean, std, len(seeds), seeds)


def by_seed(info: dict[str, Any], kind: str = "ticket") -> dict[int, float]:
    """A ticket.json's primary metric for each seed of an arm ("ticket" or "dense")."""
    values = info["metrics"][kind][info["primary_metric"]]["values"]
    return dict(zip(info["seeds"], values, strict=True))


def summary_text(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """'80.7 ± 0.4 (n = 3)', or '80.7 (n = 1)': a single value never carries a spread."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{scale * mean:.{digits}f} (n = 1)"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f} (n = {len(values)})"
