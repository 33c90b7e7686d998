"""The statistics every table uses: one matching rule, paired differences by seed, and failed runs kept apart.

One place, so that the report, the command line's verdict, the transfer table and ticket.json can never disagree
on what "matching" means, and a score over one seed is never shown as if it had a spread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bert_tickets.results import Arm, TicketInfo

MATCHING_RULE = ("matching: the ticket's mean >= dense's mean − one standard deviation of dense, both over all "
                 "the same seeds, at least 2 (Chen et al. 2020), failed runs included; never where more of the "
                 "ticket's runs failed than dense's, or all of them (one dense or ticket seed: n/a)")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for one value: callers show n = 1, never ± 0)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def is_matching(ticket: Mapping[str, Any], dense: Mapping[str, Any]) -> bool | None:
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


def matching_over(ticket: dict[int, float], dense: dict[int, float], seeds: Sequence[int],
                  failed: set[int] | None = None, dense_failed: set[int] | None = None) -> bool | None:
    """`is_matching` with both arms restricted to `seeds` (seed -> score; the failed seeds of each, if recorded)."""
    def summary(values: dict[int, float], failures: set[int] | None) -> dict[str, Any]:
        mean, std = mean_std([values[s] for s in seeds]) if seeds else (float("nan"), float("nan"))
        return {"mean": mean, "std": std, "values": [values[s] for s in seeds],
                "failed": None if failures is None else len(failures & set(seeds))}

    return is_matching(summary(ticket, failed), summary(dense, dense_failed))


def shared_seed_matching(ticket: dict[int, float], dense: dict[int, float], failed: set[int] | None = None,
                         dense_failed: set[int] | None = None) -> bool | None:
    """The matching verdict over the seeds both arms ran (seed -> score): every table, transfer row and heatmap
    cell reads this one, so a verdict never sets one arm's seeds against another set of the other's."""
    return matching_over(ticket, dense, sorted(set(ticket) & set(dense)), failed, dense_failed)


def robust_matching(ticket: dict[int, float], dense: dict[int, float], failed: set[int] | None = None,
                    dense_failed: set[int] | None = None) -> bool | None:
    """Whether the matching verdict over the seeds both arms ran stays the same with any one seed left out of both
    (None below three such seeds: leaving one out leaves no verdict)."""
    seeds = sorted(set(ticket) & set(dense))
    if len(seeds) < 3:
        return None
    verdict = shared_seed_matching(ticket, dense, failed, dense_failed)
    return all(matching_over(ticket, dense, [s for s in seeds if s != left], failed, dense_failed) == verdict
               for left in seeds)


def failed_count(runs: Sequence[dict[str, Any]]) -> int | None:
    """How many of an arm's fine-tunings failed to learn; None when none of their records says (older runs)."""
    said = [r.get("failed") for r in runs if r.get("failed") is not None]
    return sum(bool(f) for f in said) if said else None


def matching_mark(matching: bool | None) -> str:
    return {True: "matching", False: "not matching", None: "n/a (one seed)"}[matching]


CONFIDENCE = 0.95  # every interval the report prints


@dataclass(frozen=True)
class Paired:
    """a − b over the seeds both arms ran: mean, sample std and n of the per-seed differences, with the 95%
    t-interval of their mean, the paired t-test and the exact sign test (n ≥ 2). At n = 3 the interval's half-width
    is 2.5 × the std: the std of differences alone reads as far more certain than it is."""

    mean: float
    std: float
    n: int
    seeds: tuple[int, ...]
    differences: tuple[float, ...] = ()

    @property
    def half_width(self) -> float | None:
        """Of the 95% t-interval of the mean difference; None below two seeds."""
        if self.n < 2:
            return None
        from scipy.stats import t

        return float(t.ppf(0.5 + CONFIDENCE / 2, self.n - 1) * self.std / np.sqrt(self.n))

    @property
    def interval(self) -> tuple[float, float] | None:
        width = self.half_width
        return None if width is None else (self.mean - width, self.mean + width)

    @property
    def t(self) -> float | None:
        if self.n < 2:
            return None
        if self.std == 0:
            return 0.0 if self.mean == 0 else float(np.sign(self.mean) * np.inf)
        return float(self.mean / (self.std / np.sqrt(self.n)))

    @property
    def p(self) -> float | None:
        """Two-sided p of the paired t-test (None below two seeds)."""
        if self.t is None:
            return None
        from scipy.stats import t

        return float(2 * t.sf(abs(self.t), self.n - 1)) if np.isfinite(self.t) else 0.0

    @property
    def sign_p(self) -> float | None:
        """Two-sided exact sign-test p over the non-zero differences (None without them): no normality assumed."""
        signs = [d for d in self.differences if d != 0]
        if not signs:
            return None
        from scipy.stats import binomtest

        return float(binomtest(sum(d > 0 for d in signs), len(signs)).pvalue)

    def within(self, margin: float) -> bool | None:
        """Equivalent within ±`margin` (fixed in advance): the whole 95% interval inside it; None below two seeds.
        Neither True nor False says "not resolved": an interval that crosses the margin shows neither."""
        if self.interval is None:
            return None
        low, high = self.interval
        if -margin < low and high < margin:
            return True
        return False if low >= margin or high <= -margin else None

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """'+2.6 [+0.1, +5.1] (n = 3, p = 0.04)': the mean difference, its 95% interval, n and the t-test's p."""
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{scale * self.mean:+.{digits}f} (n = 1)"
        low, high = self.interval or (float("nan"), float("nan"))
        return (f"{scale * self.mean:+.{digits}f} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}] "
                f"(n = {self.n}, p = {self.p:.2g})")

    def columns(self, prefix: str) -> dict[str, Any]:
        """The CSV columns of this difference: mean, std, n, interval, t, p and the sign test's p."""
        low, high = self.interval or (None, None)
        return {prefix: self.mean, f"{prefix}_std": self.std, f"{prefix}_n": self.n, f"{prefix}_ci_low": low,
                f"{prefix}_ci_high": high, f"{prefix}_t": self.t, f"{prefix}_p": self.p,
                f"{prefix}_sign_p": self.sign_p}


def paired(a: dict[int, float], b: dict[int, float]) -> Paired:
    """The per-seed differences a[s] − b[s] over the seeds both hold (the same seed: same head and data order)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return Paired(float("nan"), float("nan"), 0, ())
    differences = tuple(a[s] - b[s] for s in seeds)
    mean, std = mean_std(differences)
    return Paired(mean, std, len(seeds), seeds, differences)


def by_seed(info: TicketInfo, kind: Arm = "ticket") -> dict[int, float]:
    """A ticket.json's primary metric for each seed of an arm ("ticket" or "dense")."""
    values = info["metrics"][kind][info["primary_metric"]]["values"]
    return dict(zip(info["seeds"], values, strict=True))


def failed_seeds(info: TicketInfo, kind: Arm = "ticket") -> set[int] | None:
    """Seeds of an arm whose fine-tuning never left chance (`training.FAILED_RULE`); None for runs recorded before
    failures were (no per-seed records in ticket.json)."""
    runs = info.get("runs", {}).get(kind)
    if runs is None:
        return None
    return {seed for seed, r in zip(info["seeds"], runs, strict=True) if r.get("failed")}  # in the seeds' order


def summary_text(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """'80.7 ± 0.4 (n = 3)', or '80.7 (n = 1)': a single value never carries a spread."""
    if not values:
        return "–"
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{scale * mean:.{digits}f} (n = 1)"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f} (n = {len(values)})"
