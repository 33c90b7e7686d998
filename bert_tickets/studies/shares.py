"""Splitting a command's jobs (`studies.runner.Work`): this machine's share (`--cell i/N`) and the rounds local
workers take (`bert_tickets.workers.JobRounds`, the one implementation shared with a run's evaluation seeds).
"""

from __future__ import annotations

from typing import Any

from bert_tickets import paths
from bert_tickets.studies.jobs import Job, Recipe
from bert_tickets.workers import JobRounds, cells_of_worker, parse_share


def share(items: list[Any], cell: str | None) -> list[Any]:
    """This machine's share of the items (`cell` is i/N), or all of them."""
    return cells_of_worker(items, *parse_share(cell)) if cell else items


def study_rounds(recipe: Recipe, jobs: list[Job], mine: list[Job], folder: Any) -> JobRounds[Job]:
    """Each phase's units, in order ("tickets" first: tickets and what needs none; then what reuses them); a unit
    is one chain of jobs (a mask search's sparsities share its levels), restricted to this machine's share."""
    rounds: dict[str, list[list[Job]]] = {}
    for job in jobs:
        units = rounds.setdefault(job.phase, [])
        unit = next((u for u in units if u[0].chain == job.chain), None)
        if unit is None:
            units.append([job])
        else:
            unit.append(job)
    kept = {phase: [[job for job in unit if job in mine] for unit in units] for phase, units in rounds.items()}
    return JobRounds(recipe, {phase: [u for u in units if u] for phase, units in kept.items()},
                     paths.workers(folder))
