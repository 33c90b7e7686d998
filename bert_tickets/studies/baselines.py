"""A ticket next to the paper's baselines at the same sparsity (one task's row of Chen et al.'s Table 2).

Each baseline is its own engine run (cached, resumable), with the ticket's model, data, recipe and seeds;
only the method differs. Masks that need a ticket (reinit, shuffle) take this ticket's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bert_tickets import paths
from bert_tickets.config import Config
from bert_tickets.errors import UserError
from bert_tickets.files import read_json, write_json
from bert_tickets.methods import METHODS, baselines, get_method
from bert_tickets.metrics import format_mean_std, metric_label
from bert_tickets.stats import is_matching, matching_mark

if TYPE_CHECKING:
    from bert_tickets.engine.run import ImpRun
    from bert_tickets.results import TicketInfo
    from bert_tickets.ticket import Ticket

DENSE = "dense"  # the reference arm beside every method's


def arm_label(arm: str) -> str:
    """An arm's name in tables and figures: a method's label, or dense."""
    return "dense" if arm == DENSE else get_method(arm).label


def parse_baselines(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if name not in baselines():
            known = ", ".join(baselines())
            hint = "" if name in METHODS else " (a method of its own? see --method)"
            raise UserError(f"unknown baseline {name!r}{hint}; known: {known}")
    return list(dict.fromkeys(names))


@dataclass
class Row:
    method: str
    summary: dict[str, Any]  # metric -> {mean, std, values}

    @property
    def label(self) -> str:
        return arm_label(self.method)


def baseline_config(config: Config, method: str, ticket_path: Path, ticket_sparsity: float) -> Config:
    """The ticket's config with only the method changed (and the ticket's mask where the method needs one)."""
    other = copy.deepcopy(config)
    other.pruning.method = method
    needs_ticket = get_method(method).needs_ticket
    other.pruning.ticket = str(ticket_path.resolve()) if needs_ticket else None
    other.pruning.sparsity = ticket_sparsity if needs_ticket else config.pruning.sparsity
    return other


def baseline_run(ticket_run: ImpRun, method: str) -> ImpRun:
    """A baseline beside a ticket's run, built here for every command (`find --baselines`, its progress count, a
    study's baseline jobs): the run's settings with only the method changed, and for the methods that take the
    ticket's mask, its folder and measured sparsity (the target's until the ticket exists)."""
    from bert_tickets.engine.run import ImpRun

    ticket = ticket_run.ticket_dir()
    info = paths.ticket_info(ticket)
    sparsity = read_json(info)["sparsity"] if info.exists() else ticket_run.config.pruning.sparsity
    return ImpRun(baseline_config(ticket_run.config, method, ticket, sparsity))


def compare(ticket: Ticket, baselines: list[tuple[str, TicketInfo]]) -> list[Row]:
    """Dense, the ticket, then each baseline's results at the ticket's sparsity; written to the ticket's
    comparison.json."""
    rows = [Row(DENSE, ticket.info["metrics"]["dense"]), Row(ticket.info["method"], ticket.info["metrics"]["ticket"])]
    rows += [Row(method, info["metrics"]["ticket"]) for method, info in baselines]
    primary = ticket.info["primary_metric"]
    write_json(paths.comparison(ticket.path), {
        "task": ticket.task, "sparsity": ticket.sparsity, "seeds": ticket.info["seeds"], "primary_metric": primary,
        "rows": [{"method": r.method, "label": r.label, "metrics": r.summary} for r in rows],
        "verdict": verdict(rows, primary, ticket.sparsity)})
    return rows


def verdict(rows: list[Row], primary: str, sparsity: float) -> str:
    """One line: is the ticket matching dense, and does it beat each baseline by more than the seeds' spread?"""
    by = {r.method: r.summary[primary] for r in rows}
    ticket_method = rows[1].method
    ticket, dense = by[ticket_method], by[DENSE]
    matching = is_matching(ticket, dense)
    parts = [f"at {sparsity:.0%} sparsity the {arm_label(ticket_method)} scores {100 * ticket['mean']:.1f} against "
             f"dense {100 * dense['mean']:.1f} ({matching_mark(matching)})"]
    for r in rows[2:]:
        other = by[r.method]
        gap = ticket["mean"] - other["mean"]
        beats = gap > ticket["std"] + other["std"]
        parts.append(f"{'beats' if beats else 'does not clearly beat'} {r.label} ({100 * other['mean']:.1f}, "
                     f"{100 * gap:+.1f} points)")
    return "; ".join(parts)


def comparison_table(rows: list[Row], primary: str) -> str:
    width = max(len(r.label) for r in rows)
    lines = [f"{'':<{width}}  {metric_label(primary) + ', mean ± std':>28}  failed to learn"]
    for r in rows:
        summary = r.summary[primary]
        failed = "–" if summary.get("failed") is None else f"{summary['failed']} of {len(summary['values'])}"
        lines.append(f"{r.label:<{width}}  {format_mean_std(primary, summary):>28}  {failed}")
    return "\n".join(lines)
