"""The cross-task transfer matrix: a mask found on task S, applied to θ0 and fine-tuned on task T.

Rows are the sources (`bert_tickets.studies.sources`: tasks with a ticket, or a mask made from θ0 alone such as
`magnitude`) plus a random-mask control; columns are the targets; the dense model is the reference row. Every
cell is a run folder of the engine (`evaluate` of the source's ticket on the target), so cells are cached, a rerun
computes nothing, adding a task computes only its new cells, and `--cell i/N` splits the cells over machines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bert_tickets import paths
from bert_tickets.config import Config, hashed_settings, settings_hash
from bert_tickets.engine.run import ImpRun
from bert_tickets.files import write_json, write_text
from bert_tickets.ranks import log
from bert_tickets.results import TicketInfo
from bert_tickets.stats import by_seed, failed_seeds, paired, shared_seed_matching
from bert_tickets.studies.baselines import DENSE
from bert_tickets.studies.sources import CONTROLS, RANDOM, Source, parse_source
from bert_tickets.studies.transfer_tables import latex, long_csv, markdown, write_heatmap
from bert_tickets.tasks import get_task

ConfigFor = Callable[[dict[str, Any]], Config]  # settings for one run -> its full config


@dataclass(frozen=True)
class Cell:
    source: Source  # a task's ticket, or a mask that needs no source task (the random control among them)
    target: str


def plan(sources: Sequence[str | Source], targets: list[str]) -> list[Cell]:
    """Every cell: the chosen rows, then the controls, each on every target."""
    rows = [parse_source(s) for s in sources]
    return [Cell(s, t) for s in [*rows, *CONTROLS] for t in targets]


class TransferMatrix:
    def __init__(self, sources: list[str], targets: list[str], sparsity: float, seeds: int,
                 config_for: ConfigFor, output_dir: str):
        self.sources = [parse_source(s) for s in sources]
        self.targets = [get_task(t).name for t in targets]
        self.sparsity, self.seeds, self.config_for = sparsity, seeds, config_for
        self.finetune = config_for({"data.task": self.targets[0]}).training.finetune
        study = {"sources": [s.name for s in self.sources], "targets": self.targets, "sparsity": sparsity,
                 "seeds": seeds, "settings": hashed_settings(config_for({"data.task": self.targets[0]}))}
        self.folder = paths.transfer(output_dir, sparsity, settings_hash(study))

    def config(self, settings: dict[str, Any]) -> Config:
        """One run's config; its wandb runs join this matrix's study unless the command named another."""
        config = self.config_for(settings)
        config.training.study = config.training.study or f"transfer/{self.folder.name}"
        return config

    @property
    def rows(self) -> list[Source]:
        return [*self.sources, *CONTROLS]

    def source_run(self, task: str) -> ImpRun:
        return ImpRun(self.config({"data.task": task, "pruning.sparsity": self.sparsity, "pruning.seeds": self.seeds,
                                   "training.finetune": "full"}))

    def source_ticket(self, task: str) -> Path:
        """The source's ticket at this sparsity: reused as it is from an earlier run with the same settings (not
        re-evaluated: with fewer seeds that would rewrite its ticket.json over fewer), or found."""
        run = self.source_run(task)
        if run.finished_ticket() is None:
            run.run()
        return run.ticket_dir()

    def cell_run(self, cell: Cell, source_ticket: Path | None = None) -> ImpRun:
        """The engine run of one cell; the source's ticket is found first unless its folder is given."""
        settings: dict[str, Any] = {"data.task": cell.target, "pruning.sparsity": self.sparsity,
                                    "pruning.seeds": self.seeds}
        if self.is_own_ticket(cell):  # T's own ticket, evaluated by `find` itself
            return ImpRun(self.config(settings))
        task = cell.source.ticket_task
        ticket = source_ticket if source_ticket is not None or task is None else self.source_ticket(task)
        return ImpRun(self.config(settings | cell.source.settings(ticket)))

    def is_own_ticket(self, cell: Cell) -> bool:
        """The target's own ticket, fully fine-tuned: the ticket's own run, not a transfer."""
        return cell.source.ticket_task == cell.target and self.finetune == "full"

    def run_cell(self, cell: Cell) -> TicketInfo:
        run = self.cell_run(cell)
        if not self.is_own_ticket(cell):
            log(f"transfer cell {cell.source} -> {cell.target}")
        return run.run().info

    def finished_cell(self, cell: Cell) -> TicketInfo | None:
        """A cell's ticket.json if the cell is done, else None: reads, never trains (for reports)."""
        return self.cell_run(cell, self.source_ticket_dir(cell.source)).finished_ticket()

    def source_ticket_dir(self, source: Source) -> Path | None:
        """Where the row's ticket is (found or not), or None for a row that needs none. Never trains."""
        task = source.ticket_task
        return self.source_run(task).ticket_dir() if task is not None else None

    # --- outputs ---------------------------------------------------------------------------------
    def write_outputs(self, results: dict[Cell, TicketInfo]) -> dict[str, Path]:
        rows = self.long_rows(results)
        table = self.table(results)
        files = {"csv": self.folder / "matrix.csv", "markdown": self.folder / "matrix.md",
                 "latex": self.folder / "matrix.tex", "png": self.folder / "transfer.png"}
        write_text(files["csv"], long_csv(rows))
        write_text(files["markdown"], markdown(table))
        write_text(files["latex"], latex(table))
        write_heatmap(table, files["png"])
        write_json(self.folder / "study.json", {"sources": [s.name for s in self.sources], "targets": self.targets,
                                                "sparsity": self.sparsity, "seeds": self.seeds})
        return files

    def long_rows(self, results: dict[Cell, TicketInfo]) -> list[tuple[str, str, int, str, float]]:
        rows = []
        for cell, info in results.items():
            for metric, summary in info["metrics"]["ticket"].items():
                values = zip(info["seeds"], summary["values"], strict=True)
                rows += [(cell.source.name, cell.target, s, metric, v) for s, v in values]
        for target in self.targets:  # the dense reference, from any cell of that target (they share it)
            info = results[Cell(RANDOM, target)]
            for metric, summary in info["metrics"]["dense"].items():
                rows += [(DENSE, target, s, metric, v) for s, v in zip(info["seeds"], summary["values"], strict=True)]
        return rows

    def table(self, results: dict[Cell, TicketInfo]) -> dict[str, Any]:
        """Primary metric per cell: mean, std, seeds, mean / dense mean, matching (one rule: `stats`), and minus the
        target's own ticket paired by seed (where `results` holds the target's own ticket, Cell(T, T))."""
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        for cell, info in results.items():
            primary = info["primary_metric"]
            ticket, dense = info["metrics"]["ticket"][primary], info["metrics"]["dense"][primary]
            own = results.get(Cell(parse_source(cell.target), cell.target))
            versus = paired(by_seed(info), by_seed(own)) if own else None
            rows.setdefault(cell.source.name, {})[cell.target] = {
                "mean": ticket["mean"], "std": ticket["std"], "n": len(ticket["values"]), "metric": primary,
                "relative": ticket["mean"] / dense["mean"] if dense["mean"] else float("nan"),
                "matching": shared_seed_matching(by_seed(info), by_seed(info, "dense"), failed_seeds(info),
                                                 failed_seeds(info, "dense")),
                "minus_own": versus.mean if versus else None, "minus_own_std": versus.std if versus else None,
                "paired_seeds": versus.n if versus else 0}
        for target in self.targets:
            info = results[Cell(RANDOM, target)]
            dense = info["metrics"]["dense"][info["primary_metric"]]
            rows.setdefault(DENSE, {})[target] = {"mean": dense["mean"], "std": dense["std"], "n": len(dense["values"]),
                                                  "relative": 1.0, "metric": info["primary_metric"], "matching": None,
                                                  "minus_own": None, "minus_own_std": None, "paired_seeds": 0}
        return {"rows": [*(s.name for s in self.rows), DENSE], "targets": self.targets, "cells": rows,
                "sparsity": self.sparsity}
