"""The cross-task transfer matrix: a mask found on task S, applied to θ0 and fine-tuned on task T.

Rows are the sources (tasks with a ticket, or `magnitude`: θ0 pruned by magnitude) plus a random-mask
control; columns are the targets; the dense model is the reference row. Every cell is a run folder of the
engine (`evaluate` of the source's ticket on the target), so cells are cached, a rerun computes nothing,
adding a task computes only its new cells, and `--cell i/N` splits the cells over machines.
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bert_tickets import paths
from bert_tickets.compare import DENSE
from bert_tickets.config import Config, non_default_settings, settings_hash
from bert_tickets.imp import ImpRun
from bert_tickets.methods.magnitude import MagnitudePruning
from bert_tickets.methods.random_pruning import RandomPruning
from bert_tickets.methods.ticket import GivenTicket
from bert_tickets.runs import log, write_bytes, write_json, write_text
from bert_tickets.stats import MATCHING_RULE, by_seed, is_matching, paired
from bert_tickets.tasks import get_task

# rows beside the sources' tickets: masks that need no source (the methods of those names); then dense
RANDOM, MAGNITUDE = RandomPruning.name, MagnitudePruning.name
ConfigFor = Callable[[dict[str, Any]], Config]  # settings for one run -> its full config


@dataclass(frozen=True)
class Cell:
    source: str  # a task whose ticket is transferred, `magnitude`, or the `random` control
    target: str


def plan(sources: list[str], targets: list[str]) -> list[Cell]:
    return [Cell(s, t) for s in [*sources, RANDOM] for t in targets]


class TransferMatrix:
    def __init__(self, sources: list[str], targets: list[str], sparsity: float, seeds: int,
                 config_for: ConfigFor, output_dir: str):
        self.sources = [s if s == MAGNITUDE else get_task(s).name for s in sources]
        self.targets = [get_task(t).name for t in targets]
        self.sparsity, self.seeds, self.config_for = sparsity, seeds, config_for
        self.finetune = config_for({"data.task": self.targets[0]}).training.finetune
        study = {"sources": self.sources, "targets": self.targets, "sparsity": sparsity, "seeds": seeds,
                 "settings": non_default_settings(config_for({"data.task": self.targets[0]}))}
        self.folder = paths.transfer(output_dir, sparsity, settings_hash(study))

    def config(self, settings: dict[str, Any]) -> Config:
        """One run's config; its wandb runs join this matrix's study unless the command named another."""
        config = self.config_for(settings)
        config.training.study = config.training.study or f"transfer/{self.folder.name}"
        return config

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
        if cell.source == cell.target and self.finetune == "full":  # T's own ticket, evaluated by `find` itself
            return ImpRun(self.config(settings))
        if cell.source in (RANDOM, MAGNITUDE):
            settings["pruning.method"] = cell.source
        else:
            ticket = source_ticket if source_ticket is not None else self.source_ticket(cell.source)
            settings |= {"pruning.method": GivenTicket.name, "pruning.ticket": str(ticket.resolve())}
        return ImpRun(self.config(settings))

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        run = self.cell_run(cell)
        if cell.source != cell.target or self.finetune != "full":  # not the target's own ticket
            log(f"transfer cell {cell.source} -> {cell.target}")
        return run.run().info

    def finished_cell(self, cell: Cell) -> dict[str, Any] | None:
        """A cell's ticket.json if the cell is done, else None: reads, never trains (for reports)."""
        source = None if cell.source in (RANDOM, MAGNITUDE) else self.source_run(cell.source).ticket_dir()
        return self.cell_run(cell, source).finished_ticket()

    def shared_jobs(self, cells: list[Cell]) -> list[str | Cell]:
        """What other cells reuse: each source's ticket, and one cell per other target (it trains the dense run)."""
        tickets = list(dict.fromkeys(c.source for c in cells if c.source not in (RANDOM, MAGNITUDE)))
        firsts = {c.target: c for c in reversed(cells) if c.target not in tickets}
        return [*tickets, *firsts.values()]

    def run_job(self, job: str | Cell) -> None:
        if isinstance(job, Cell):
            self.run_cell(job)
        else:
            self.source_ticket(job)

    def run(self, cells: list[Cell]) -> dict[Cell, dict[str, Any]]:
        # A target's own ticket first: its level 0 is the dense run that the target's other cells then share.
        order = sorted(cells, key=lambda cell: cell.source != cell.target)
        results = {cell: self.run_cell(cell) for cell in order}
        return {cell: results[cell] for cell in cells}

    # --- outputs ---------------------------------------------------------------------------------
    def write_outputs(self, results: dict[Cell, dict[str, Any]]) -> dict[str, Path]:
        rows = self.long_rows(results)
        table = self.table(results)
        files = {"csv": self.folder / "matrix.csv", "markdown": self.folder / "matrix.md",
                 "latex": self.folder / "matrix.tex", "png": self.folder / "transfer.png"}
        write_text(files["csv"], long_csv(rows))
        write_text(files["markdown"], markdown(table))
        write_text(files["latex"], latex(table))
        write_heatmap(table, files["png"])
        write_json(self.folder / "study.json", {"sources": self.sources, "targets": self.targets,
                                                "sparsity": self.sparsity, "seeds": self.seeds})
        return files

    def long_rows(self, results: dict[Cell, dict[str, Any]]) -> list[tuple[str, str, int, str, float]]:
        rows = []
        for cell, info in results.items():
            for metric, summary in info["metrics"]["ticket"].items():
                rows += [(cell.source, cell.target, s, metric, v) for s, v in zip(info["seeds"], summary["values"],
                                                                                      strict=True)]
        for target in self.targets:  # the dense reference, from any cell of that target (they share it)
            info = results[Cell(RANDOM, target)]
            for metric, summary in info["metrics"]["dense"].items():
                rows += [(DENSE, target, s, metric, v) for s, v in zip(info["seeds"], summary["values"], strict=True)]
        return rows

    def table(self, results: dict[Cell, dict[str, Any]]) -> dict[str, Any]:
        """Primary metric per cell: mean, std, seeds, mean / dense mean, matching (one rule: `stats`), and minus the
        target's own ticket paired by seed (where `results` holds the target's own ticket, Cell(T, T))."""
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        for cell, info in results.items():
            primary = info["primary_metric"]
            ticket, dense = info["metrics"]["ticket"][primary], info["metrics"]["dense"][primary]
            own = results.get(Cell(cell.target, cell.target))
            versus = paired(by_seed(info), by_seed(own)) if own else None
            rows.setdefault(cell.source, {})[cell.target] = {
                "mean": ticket["mean"], "std": ticket["std"], "n": len(ticket["values"]), "metric": primary,
                "relative": ticket["mean"] / dense["mean"] if dense["mean"] else float("nan"),
                "matching": is_matching(ticket, dense),
                "minus_own": versus.mean if versus else None, "minus_own_std": versus.std if versus else None,
                "paired_seeds": versus.n if versus else 0}
        for target in self.targets:
            info = results[Cell(RANDOM, target)]
            dense = info["metrics"]["dense"][info["primary_metric"]]
            rows.setdefault(DENSE, {})[target] = {"mean": dense["mean"], "std": dense["std"], "n": len(dense["values"]),
                                                  "relative": 1.0, "metric": info["primary_metric"], "matching": None,
                                                  "minus_own": None, "minus_own_std": None, "paired_seeds": 0}
        return {"rows": [*self.sources, RANDOM, DENSE], "targets": self.targets, "cells": rows,
                "sparsity": self.sparsity}


@dataclass
class TransferWork:
    """A matrix's cells for local workers: the shared runs first (sources' tickets, one cell per target), then
    the cells."""

    matrix: TransferMatrix
    cells: list[Cell]

    @property
    def workers_dir(self) -> Path:
        return paths.workers(self.matrix.folder)

    def rounds(self) -> dict[str, list[str | Cell]]:
        return {"shared": self.matrix.shared_jobs(self.cells), "cells": list(self.cells)}

    def run_unit(self, unit: str | Cell) -> None:
        self.matrix.run_job(unit)

    def is_done(self, unit: str | Cell) -> bool:
        if isinstance(unit, Cell):
            return self.matrix.finished_cell(unit) is not None
        return self.matrix.source_run(unit).finished_ticket() is not None

    def before_workers(self) -> bool:
        return True


def long_csv(rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["source", "target", "seed", "metric", "value"])
    writer.writerows(rows)
    return out.getvalue()


def _cell_text(cell: dict[str, Any], latex_style: bool = False) -> str:
    pm = r" $\pm$ " if latex_style else " ± "
    text = f"{100 * cell['mean']:.1f}" + (f"{pm}{100 * cell['std']:.1f}" if cell["n"] > 1 else " (n = 1)")
    if cell["minus_own"] is not None:
        text += f" ({100 * cell['minus_own']:+.1f})"
    return text + ("*" if cell["matching"] else "")


def markdown(table: dict[str, Any]) -> str:
    targets = table["targets"]
    header = "| source \\ target | " + " | ".join(
        f"{t} ({table['cells'][DENSE][t]['metric']})" for t in targets) + " |"
    lines = [header, "|" + "---|" * (len(targets) + 1)]
    for source in table["rows"]:
        lines.append(f"| {source} | " + " | ".join(_cell_text(table["cells"][source][t]) for t in targets) + " |")
    lines.append("")
    lines.append(f"Sparsity {table['sparsity']:.0%}. Mean ± std over seeds (in %; n = 1: one seed, no spread); "
                 "(±x): minus the target's own ticket, TRANSFER(S,T) − TRANSFER(T,T), paired by seed; *: "
                 f"{MATCHING_RULE}.")
    return "\n".join(lines) + "\n"


def latex(table: dict[str, Any]) -> str:
    targets = table["targets"]
    lines = [r"\begin{tabular}{l" + "c" * len(targets) + "}", r"\toprule",
             "source & " + " & ".join(t.upper() for t in targets) + r" \\", r"\midrule"]
    for source in table["rows"]:
        cells = [_cell_text(table["cells"][source][t], latex_style=True).replace("*", r"$^*$") for t in targets]
        lines.append(source.replace("_", r"\_") + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_heatmap(table: dict[str, Any], path: Path, subtitle: str = "") -> None:
    """The heatmap as a PNG file, written atomically (not at all if the same PNG is there)."""
    png = io.BytesIO()
    heatmap(table, png, subtitle)
    write_bytes(path, png.getvalue())


def heatmap(table: dict[str, Any], path: Any, subtitle: str = "") -> None:
    """One quantity: each mask's cell minus the target's own ticket, in points, paired by seed, with n; the
    diagonal outlined; dense is the reference, not a row. Targets without their own ticket show the score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle

    sources, targets, cells = [r for r in table["rows"] if r != DENSE], table["targets"], table["cells"]
    values = np.array([[100 * (cells[s][t]["minus_own"] or 0.0) for t in targets] for s in sources])
    # the colour scale follows the masks' own differences; random pruning may lie far beyond and is clipped
    masks = values[[i for i, s in enumerate(sources) if s != RANDOM]] if len(sources) > 1 else values
    scale = max(1.0, float(np.nanmax(np.abs(masks))) if masks.size else 1.0)
    fig, ax = plt.subplots(figsize=(2.8 + 1.9 * len(targets), 1.7 + 0.7 * len(sources)), dpi=100)
    image = ax.imshow(np.clip(values, -scale, scale), cmap="RdBu", norm=TwoSlopeNorm(0, -scale, scale))
    ax.set_xticks(range(len(targets)), labels=targets)
    ax.set_yticks(range(len(sources)), labels=[source_label(s) for s in sources])
    ax.set_xlabel("target task (fine-tuned on)")
    ax.set_ylabel("mask from")
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            c = cells[s][t]
            if s == t:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
                text = f"own ticket\n{100 * c['mean']:.1f}"
            elif c["minus_own"] is None:
                text = f"{100 * c['mean']:.1f}\n(no own ticket)"
            else:
                spread = f" ± {100 * c['minus_own_std']:.1f}" if c["paired_seeds"] > 1 else ""
                text = f"{100 * c['minus_own']:+.1f}{spread}\nn = {c['paired_seeds']}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if abs(values[i, j]) > 0.6 * scale else "black")
    fig.colorbar(image, ax=ax, label="− target's own ticket (points)")
    title = f"Transfer at {table['sparsity']:.0%} sparsity: cell − own ticket, paired by seed"
    width = int(13 * fig.get_size_inches()[0])  # characters of 8-point text across the figure, not the axes
    lines = [*textwrap.wrap(title, width), *textwrap.wrap(subtitle, width)]
    fig.suptitle("\n".join(lines), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.035 * len(lines)))
    fig.savefig(path, format="png")
    plt.close(fig)


def source_label(source: str) -> str:
    """A row of the matrix: a task's IMP ticket, or a mask-only method's label."""
    from bert_tickets.compare import arm_label

    return arm_label(source) if source in (RANDOM, MAGNITUDE) else f"{source} IMP ticket"
