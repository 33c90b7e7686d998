"""The study's report: the paper's tables and figures from finished runs only (it never trains).

Writes into `<study>/report/`: README.md (Markdown that renders on GitHub and in a model card), one PNG per
figure and the CSV behind each, and says which runs are missing.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bert_tickets import paths
from bert_tickets.compare import DENSE, arm_label
from bert_tickets.masks import load_mask
from bert_tickets.methods import IMP
from bert_tickets.runs import write_bytes, write_text
from bert_tickets.study_plan import Job, StudyPlan
from bert_tickets.transfer_matrix import RANDOM, Cell, long_csv, markdown, write_heatmap

MATRIX_TYPES = {  # encoder parameter name pattern -> the paper's matrix type
    r"attention\.self\.query": "query", r"attention\.self\.key": "key", r"attention\.self\.value": "value",
    r"attention\.output\.dense": "attn-output", r"intermediate\.dense": "intermediate",
    r"layer\.\d+\.output\.dense": "output", r"pooler\.dense": "pooler",
}


@dataclass
class Finished:
    """What the runs of a study hold so far: job -> ticket.json, and the jobs still missing."""

    results: dict[Job, dict[str, Any]]
    missing: list[Job]


def collect(plan: StudyPlan) -> Finished:
    results, missing = {}, []
    for job in plan.jobs():
        info = plan.finished(job)
        if info is None:
            missing.append(job)
        else:
            results[job] = info
    return Finished(results, missing)


def write_report(plan: StudyPlan, finished: Finished | None = None) -> Path:
    """Every table and figure that the finished runs allow; the missing runs listed at the top."""
    finished = finished if finished is not None else collect(plan)
    out = paths.study_report(plan.folder)
    sections = [f"# Study `{plan.spec.name}`", plan.spec.description.strip(), _missing_section(finished)]
    sections += [_table2_section(plan, finished, out), _curves_section(plan, finished, out),
                 _transfer_section(plan, finished, out), _masks_section(plan, finished, out)]
    text = "\n\n".join(s for s in sections if s) + "\n"
    write_text(out / "README.md", text)
    return out


def _missing_section(finished: Finished) -> str:
    total = len(finished.results) + len(finished.missing)
    if not finished.missing:
        return f"All {total} runs of the study are finished."
    listed = "\n".join(f"- {job}" for job in finished.missing)
    return (f"**{len(finished.missing)} of {total} runs are missing**; the tables and figures below leave them "
            f"out. Rerun the study to compute them:\n\n{listed}")


# --- Table 2: each task's ticket against every baseline at its highest matching sparsity ------------------
def _primary(info: dict[str, Any]) -> str:
    return info["primary_metric"]


def _score(info: dict[str, Any], kind: str = "ticket") -> dict[str, Any]:
    return info["metrics"][kind][_primary(info)]


def table2_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    """Per task: the sparsity shown (highest where the IMP ticket matches; else the lowest run), then one row
    per arm (dense, IMP, each baseline) with mean, std and both matching criteria."""
    rows = []
    for task in plan.spec.tasks:
        tickets = {s: finished.results.get(Job("ticket", task, s)) for s in plan.spec.sparsities}
        every = {s: info for s, info in tickets.items() if info is not None}
        # where the baselines ran, when the study names those sparsities (baseline_sparsities)
        done = {s: info for s, info in every.items() if s in plan.baseline_sparsities} or every
        if not done:
            continue
        matching = [s for s, info in done.items() if info["matching"]]
        shown = max(matching) if matching else min(done)
        highest = max((s for s, info in every.items() if info["matching"]), default=None)
        info = done[shown]
        dense = _score(info, "dense")
        arms = [(DENSE, dense), (IMP, _score(info))]
        arms += [(m, _score(b)) for m in plan.spec.baselines
                 if (b := finished.results.get(Job("baseline", task, shown, m))) is not None]
        for method, score in arms:
            rows.append({
                "task": task, "metric": _primary(info), "sparsity": shown, "highest_matching": shown == highest,
                "highest_matching_sparsity": highest,
                "method": method, "mean": score["mean"], "std": score["std"], "seeds": len(score["values"]),
                "within_one_std": score["mean"] >= dense["mean"] - dense["std"],
                "at_least_dense_mean": score["mean"] >= dense["mean"]})
    return rows


def _shown_note(row: dict[str, Any]) -> str:
    if row["highest_matching"]:
        return ""
    if row["highest_matching_sparsity"] is None:
        return " (none matching)"
    return f" (highest matching: {row['highest_matching_sparsity']:.0%}, without baselines)"


def _table2_section(plan: StudyPlan, finished: Finished, out: Path) -> str:
    rows = table2_rows(plan, finished)
    if not rows:
        return ""
    write_csv(out / "table2.csv", rows)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = [DENSE, IMP, *plan.spec.baselines]
    by = {(r["task"], r["method"]): r for r in rows}
    first = {t: next(r for r in rows if r["task"] == t) for t in tasks}
    header = "| | " + " | ".join(f"{t} ({first[t]['metric']})" for t in tasks) + " |"
    lines = [header, "|---" * (len(tasks) + 1) + "|"]
    lines.append("| sparsity shown | " + " | ".join(f"{first[t]['sparsity']:.0%}" + _shown_note(first[t])
                                                  for t in tasks) + " |")
    for method in methods:
        cells = []
        for t in tasks:
            r = by.get((t, method))
            if r is None:
                cells.append("–")
                continue
            mark = ("*" if r["within_one_std"] else "") + ("†" if r["at_least_dense_mean"] else "")
            cells.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}{mark if method != 'dense' else ''}")
        lines.append(f"| {arm_label(method)} | " + " | ".join(cells) + " |")
    return ("## Tickets against the baselines (the paper's Table 2)\n\n"
            "Each task at the highest sparsity where its IMP ticket matches dense (or, if none does, the lowest "
            "sparsity run), among the sparsities where the baselines ran, "
            f"mean ± std over {plan.spec.seeds} seeds, in %. *: within one standard deviation of dense (the "
            "paper's criterion); †: at least dense's mean. Every arm uses the same recipe and seeds.\n\n"
            + "\n".join(lines) + "\n\nCSV: [table2.csv](table2.csv)")


# --- curves: score against sparsity, IMP and every baseline, seed bands, the dense band -------------------
def curve_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    rows = []
    for job, info in finished.results.items():
        if job.kind == "cell" or job.task not in plan.spec.tasks:  # a source-only ticket is one point, no curve
            continue
        rows.append(_curve_point(job.task, job.method, job.sparsity, info, _score(info)))
        if job.kind == "ticket":
            rows.append(_curve_point(job.task, DENSE, 0.0, info, _score(info, "dense")))
    unique = {(r["task"], r["method"], r["sparsity"]): r for r in rows}
    return sorted(unique.values(), key=lambda r: (r["task"], r["method"], r["sparsity"]))


def _curve_point(task: str, method: str, sparsity: float, info: dict[str, Any], score: dict[str, Any]) -> dict:
    return {"task": task, "method": method, "sparsity": sparsity, "metric": _primary(info), "mean": score["mean"],
            "std": score["std"], "values": " ".join(f"{v:.6f}" for v in score["values"])}


def _curves_section(plan: StudyPlan, finished: Finished, out: Path) -> str:
    rows = curve_rows(plan, finished)
    if not rows:
        return ""
    write_csv(out / "curves.csv", rows)
    _save_figure(out / "curves.png", lambda: _plot_curves(rows, [IMP, *plan.spec.baselines]))
    return ("## Score against sparsity\n\n![score against sparsity](curves.png)\n\n"
            "Lines: mean over seeds; bands: ± one standard deviation; grey band: dense (mean ± std). "
            "CSV: [curves.csv](curves.csv)")


def _plot_curves(rows: list[dict[str, Any]], methods: list[str]):
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cols = min(3, len(tasks))
    n_rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.6 * cols, 3.6 * n_rows), dpi=110, squeeze=False)
    colors = dict(zip(methods, plt.get_cmap("tab10").colors, strict=False))
    for ax, task in zip(axes.flat, tasks, strict=False):
        mine = [r for r in rows if r["task"] == task]
        for d in (r for r in mine if r["method"] == DENSE):
            ax.axhspan(100 * (d["mean"] - d["std"]), 100 * (d["mean"] + d["std"]), color="0.85", label="dense")
            ax.axhline(100 * d["mean"], color="0.5", lw=1)
        for method in methods:
            points = sorted((r for r in mine if r["method"] == method), key=lambda r: r["sparsity"])
            if not points:
                continue
            x = [100 * r["sparsity"] for r in points]
            y = [100 * r["mean"] for r in points]
            s = [100 * r["std"] for r in points]
            ax.plot(x, y, marker="o", color=colors[method], label=arm_label(method), lw=2 if method == IMP else 1.2)
            ax.fill_between(x, [a - b for a, b in zip(y, s, strict=True)], [a + b for a, b in zip(y, s, strict=True)],
                            color=colors[method], alpha=0.15)
            if len(points) == 1:  # a band has no width at one sparsity: an error bar instead
                ax.errorbar(x, y, yerr=s, color=colors[method], capsize=3, lw=1)
        ax.set_title(task)
        ax.set_xlim(0, 100 * max(r["sparsity"] for r in mine) + 10)  # from dense (0%) on, even with one sparsity
        ax.set_xlabel("sparsity (% of prunable weights pruned)")
        ax.set_ylabel(f"{mine[0]['metric']} (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    legend = {}  # every arm of every panel, once: a task's first panel may lack some baselines
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    ncol = min(len(labels), 2 * cols)  # a legend no wider than the panels
    legend_rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * legend_rows / n_rows, 1, 1))
    return fig


# --- transfer ----------------------------------------------------------------------------------------------
def _transfer_section(plan: StudyPlan, finished: Finished, out: Path) -> str:
    if plan.matrix is None:
        return ""
    matrix = copy.copy(plan.matrix)  # the report's view: only complete targets; the plan's matrix stays whole
    every = [Cell(s, t) for s in [*matrix.sources, RANDOM] for t in matrix.targets]
    cells = {c: info for c in every if (info := finished.results.get(plan.cell_job(c))) is not None}
    complete = [t for t in matrix.targets if all(Cell(s, t) in cells for s in [*matrix.sources, RANDOM])]
    if not complete:
        return "## Transfer between tasks\n\nNo target has all its cells yet."
    matrix.targets = complete
    results = {Cell(s, t): cells[Cell(s, t)] for s in [*matrix.sources, RANDOM] for t in complete}
    table = matrix.table(results)
    write_text(out / "transfer.csv", long_csv(matrix.long_rows(results)))
    write_heatmap(table, out / "transfer.png")
    own_rows = []
    for source in [*matrix.sources, RANDOM]:
        for target in complete:
            own = table["cells"].get(target, {}).get(target)
            value = table["cells"][source][target]["mean"]
            own_rows.append({"source": source, "target": target,
                             "fraction_of_own": value / own["mean"] if own and own["mean"] else float("nan")})
    write_csv(out / "transfer_fraction_of_own.csv", own_rows)
    fractions = "| source \\ target | " + " | ".join(complete) + " |\n" + "|---" * (len(complete) + 1) + "|\n"
    for source in [*matrix.sources, RANDOM]:
        values = [r["fraction_of_own"] for r in own_rows if r["source"] == source]
        fractions += f"| {source} | " + " | ".join(f"{100 * v:.0f}%" if v == v else "–" for v in values) + " |\n"
    skipped = [t for t in plan.spec.transfer.targets if t not in complete] if plan.spec.transfer else []
    note = f"\n\nTargets left out until all their cells are done: {', '.join(skipped)}." if skipped else ""
    return (f"## Transfer between tasks ({matrix.sparsity:.0%} masks)\n\n![transfer](transfer.png)\n\n"
            + markdown(table)
            + "\nFraction of the target's own-ticket score that each source's mask reaches:\n\n" + fractions
            + "\nCSV: [transfer.csv](transfer.csv), [transfer_fraction_of_own.csv](transfer_fraction_of_own.csv)"
            + note)


# --- what the masks look like ---------------------------------------------------------------------------
def matrix_type(name: str) -> str:
    return next((kind for pattern, kind in MATRIX_TYPES.items() if re.search(pattern, name)), "other")


def layer_of(name: str) -> str:
    found = re.search(r"layer\.(\d+)\.", name)
    return found.group(1) if found else "pooler"


def _masks_section(plan: StudyPlan, finished: Finished, out: Path) -> str:
    sparsity = plan.spec.transfer.sparsity if plan.spec.transfer else max(plan.spec.sparsities)
    if sparsity not in plan.spec.sparsities:
        sparsity = max(plan.spec.sparsities)
    masks = {}
    for task in dict.fromkeys(plan.spec.tasks + plan.spec.ticket_sources):  # sources' tickets too (masked-LM's)
        if Job("ticket", task, sparsity) in finished.results:
            masks[task] = load_mask(paths.mask(plan.ticket_run(task, sparsity).ticket_dir()))
    if not masks:
        return ""
    overlap = mask_overlap(masks)
    write_csv(out / "mask_overlap.csv", [{"a": a, "b": b, "jaccard": v} for (a, b), v in overlap.items()])
    layers = layer_sparsity(masks)
    write_csv(out / "mask_layers.csv", layers)
    chance = (1 - sparsity) / (1 + sparsity)
    _save_figure(out / "mask_overlap.png", lambda: _plot_overlap(list(masks), overlap, sparsity, chance))
    _save_figure(out / "mask_layers.png", lambda: _plot_layers(layers, sparsity))
    return (f"## What the masks look like ({sparsity:.0%} IMP tickets)\n\n"
            f"![mask overlap](mask_overlap.png)\n\nPairwise overlap of the kept weights (Jaccard: shared kept / "
            f"kept by either). Two independent random masks at this sparsity overlap {chance:.2f} on average.\n\n"
            "![sparsity per layer and matrix type](mask_layers.png)\n\n"
            "Sparsity of each ticket per encoder layer and matrix type (where tickets agree, their lines lie on "
            "top of each other). "
            "CSV: [mask_overlap.csv](mask_overlap.csv), [mask_layers.csv](mask_layers.csv)")


def mask_overlap(masks: dict[str, dict[str, torch.Tensor]]) -> dict[tuple[str, str], float]:
    """Jaccard overlap of the kept weights of every pair of masks, over the entries both hold."""
    out = {}
    for a in masks:
        for b in masks:
            names = [n for n in masks[a] if n in masks[b]]
            shared = sum(int((masks[a][n] & masks[b][n]).sum()) for n in names)
            either = sum(int((masks[a][n] | masks[b][n]).sum()) for n in names)
            out[(a, b)] = shared / either if either else float("nan")
    return out


def layer_sparsity(masks: dict[str, dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    rows = []
    for task, mask in masks.items():
        groups: dict[tuple[str, str], list[int]] = {}
        for name, m in mask.items():
            kept_total = groups.setdefault((layer_of(name), matrix_type(name)), [0, 0])
            kept_total[0] += int(m.sum())
            kept_total[1] += m.numel()
        rows += [{"task": task, "layer": layer, "matrix": kind, "sparsity": 1 - kept / total}
                 for (layer, kind), (kept, total) in groups.items()]
    return rows


def _plot_overlap(tasks: list[str], overlap: dict[tuple[str, str], float], sparsity: float, chance: float):
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array([[overlap[(a, b)] for b in tasks] for a in tasks])
    fig, ax = plt.subplots(figsize=(1.8 + 1.1 * len(tasks), 1.4 + 0.9 * len(tasks)), dpi=110)
    # colours from what two random masks would share to identity: the differences between tickets stay visible
    low = min(chance, float(np.nanmin(values)))
    image = ax.imshow(values, cmap="viridis", vmin=low, vmax=1)
    ax.set_xticks(range(len(tasks)), labels=tasks)
    ax.set_yticks(range(len(tasks)), labels=tasks)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center",
                    color="black" if values[i, j] > low + 0.6 * (1 - low) else "white", fontsize=9)
    bar = fig.colorbar(image, ax=ax, label="Jaccard overlap of kept weights")
    bar.ax.axhline(chance, color="red", lw=1.5)
    bar.ax.text(1.05, chance, " random", transform=bar.ax.get_yaxis_transform(), va="center", fontsize=7,
                color="red")
    ax.set_title(f"Mask overlap at {sparsity:.0%} sparsity")
    fig.tight_layout()
    return fig


def _plot_layers(rows: list[dict[str, Any]], sparsity: float):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    kinds = [k for k in dict.fromkeys(MATRIX_TYPES.values()) if any(r["matrix"] == k for r in rows) and k != "pooler"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 3.2), dpi=110, sharey=True, squeeze=False)
    styles = [("-", "o", 5), ("--", "s", 4), (":", "^", 4), ("-.", "x", 5)]  # lines that coincide stay visible
    for ax, kind in zip(axes.flat, kinds, strict=True):
        for i, task in enumerate(tasks):
            points = sorted(((int(r["layer"]), r["sparsity"]) for r in rows
                             if r["task"] == task and r["matrix"] == kind), key=lambda p: p[0])
            line, marker, size = styles[i % len(styles)]
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], ls=line, marker=marker, ms=size,
                    label=task, alpha=0.85)
        ax.axhline(100 * sparsity, color="0.6", lw=1, ls="--")
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("sparsity (%)")
    axes.flat[-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


# --- files -------------------------------------------------------------------------------------------------
def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    rows = list(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def _save_figure(path: Path, make) -> None:
    """Save the figure `make()` returns atomically (not at all if the same PNG is there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig = make()
    fig.savefig(png, format="png")
    plt.close(fig)
    write_bytes(path, png.getvalue())
