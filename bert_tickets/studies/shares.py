"""Splitting a study's jobs or a transfer matrix's cells: this machine's share (`--cell i/N`) and the rounds local
workers take (`bert_tickets.workers.JobRounds`, the one implementation shared with a run's evaluation seeds).
"""

from __future__ import annotations

from typing import Any

from bert_tickets import paths
from bert_tickets.studies.jobs import CellJob, Job, MatrixRecipe, Recipe, TicketJob
from bert_tickets.studies.transfer import Cell, TransferMatrix
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


def transfer_rounds(matrix: TransferMatrix, cells: list[Cell]) -> JobRounds[Job]:
    """The shared runs first (each source's ticket, and one cell per other target: it trains the dense run), then
    every cell."""
    tickets = list(dict.fromkeys(task for c in cells if (task := c.source.ticket_task) is not None))
    firsts = {c.target: c for c in reversed(cells) if c.target not in tickets}
    shared: list[Job] = [TicketJob(task, matrix.sparsity) for task in tickets]
    shared += [CellJob(c.source, c.target, matrix.sparsity) for c in firsts.values()]
    every: list[Job] = [CellJob(c.source, c.target, matrix.sparsity) for c in cells]
    return JobRounds(MatrixRecipe(matrix), {"shared": [[j] for j in shared], "cells": [[j] for j in every]},
                     paths.workers(matrix.folder))
