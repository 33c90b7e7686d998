"""A transfer matrix's tables and figure: the long CSV (every seed), Markdown and LaTeX tables of the primary
metric, and the heatmap of each cell minus the target's own ticket. They read the matrix's `table`, never a run."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path
from typing import Any

from bert_tickets.files import write_bytes
from bert_tickets.stats import MATCHING_RULE, Paired
from bert_tickets.studies.baselines import DENSE
from bert_tickets.studies.sources import RANDOM, parse_source


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
    values = np.array([[100 * c["minus_own"] if (c := cells[s][t])["minus_own"] is not None else np.nan
                        for t in targets] for s in sources])
    # the colour scale follows the masks' own differences; a cell beyond it (random pruning, far below) is not
    # clipped into the scale's end colour but drawn grey and hatched, with its value: one colour, one meaning
    masks = values[[i for i, s in enumerate(sources) if s != RANDOM.name]] if len(sources) > 1 else values
    finite = masks[np.isfinite(masks)]
    scale = max(1.0, 1.15 * float(np.abs(finite).max()) if finite.size else 1.0)  # a margin: no mask at the end
    beyond = np.abs(np.nan_to_num(values)) > scale
    fig, ax = plt.subplots(figsize=(4.2 + 1.5 * len(targets), 2.2 + 0.8 * len(sources)), dpi=100)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")  # grey: no own ticket, or beyond the scale
    image = ax.imshow(np.ma.masked_where(beyond | ~np.isfinite(values), values), cmap=cmap,
                      norm=TwoSlopeNorm(0, -scale, scale))
    ax.set_xticks(range(len(targets)), labels=targets)
    ax.set_yticks(range(len(sources)), labels=[source_label(s) for s in sources])
    ax.set_xlabel("target task (fine-tuned on)")
    ax.set_ylabel("mask from")
    for i, s in enumerate(sources):
        for j, t in enumerate(targets):
            c = cells[s][t]
            mark = "*" if c.get("matching") else ""
            if s == t:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
                text = f"own ticket\n{100 * c['mean']:.1f}{mark}"
            elif c["minus_own"] is None:  # no own ticket: the score against the target's dense
                versus = 100 * (c["mean"] - cells[DENSE][t]["mean"]) if DENSE in cells else float("nan")
                text = f"{100 * c['mean']:.1f}{mark}\n{versus:+.1f} vs dense\n(no own ticket)"
            else:
                diff = Paired(c["minus_own"], c["minus_own_std"] or 0.0, c["paired_seeds"], ())
                interval = f"\n[{100 * diff.interval[0]:+.1f}, {100 * diff.interval[1]:+.1f}]" if diff.interval else ""
                text = f"{100 * c['minus_own']:+.1f}{mark}{interval}\nn = {c['paired_seeds']}"
            if beyond[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, ec="0.6"))
                text += "\n(off scale)"
            dark = np.isfinite(values[i, j]) and not beyond[i, j] and abs(values[i, j]) > 0.6 * scale
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label="cell − own ticket (points)")
    title = (f"Transfer at {table['sparsity']:.0%} sparsity: cell − own ticket, paired by seed, with its 95% interval; "
             "*: matches dense; grey: off the scale (hatched) or no own ticket")
    width = int(13 * fig.get_size_inches()[0])  # characters of 8-point text across the figure, not the axes
    lines = [*textwrap.wrap(title, width), *textwrap.wrap(subtitle, width)]
    fig.suptitle("\n".join(lines), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.035 * len(lines)))
    fig.savefig(path, format="png")
    plt.close(fig)


def source_label(name: str) -> str:
    """A row of the matrix by name: a task's IMP ticket, or a mask-only row's label."""
    return parse_source(name).label
