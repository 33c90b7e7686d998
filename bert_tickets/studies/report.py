"""The study's report: the paper's tables and figures from finished runs only (it never trains).

Writes into `<study>/report/`: README.md (Markdown that renders on GitHub and in a model card), one PNG per
figure and the CSV behind each, and says which runs are missing.
"""

from __future__ import annotations

import copy
import io
import json
import re
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bert_tickets import paths
from bert_tickets.engine.masks import MATRIX_TYPES, full_mask, jaccard, load_mask, magnitude_mask, matrix_type
from bert_tickets.engine.precision import resolved_precision
from bert_tickets.engine.training import FAILED_RULE
from bert_tickets.errors import UserError
from bert_tickets.files import sha256, write_bytes, write_json, write_text
from bert_tickets.methods import IMP
from bert_tickets.metrics import metric_label
from bert_tickets.results import Arm as ResultArm
from bert_tickets.results import TicketInfo
from bert_tickets.stats import (
    MATCHING_RULE,
    Paired,
    by_seed,
    failed_seeds,
    matching_mark,
    mean_std,
    paired,
    robust_matching,
    shared_seed_matching,
    summary_text,
)
from bert_tickets.studies.baselines import DENSE, arm_label
from bert_tickets.studies.jobs import JOB_KINDS, BaselineJob, CellJob, TicketJob
from bert_tickets.studies.plan import StudyPlan
from bert_tickets.studies.sections import WRITTEN, Finished, Section, TableSection, write_csv
from bert_tickets.studies.sources import RANDOM, parse_source
from bert_tickets.studies.transfer import Cell
from bert_tickets.studies.transfer_tables import long_csv, write_heatmap
from bert_tickets.tasks import get_task
from bert_tickets.tasks.base import raw_constant_score


def collect(plan: StudyPlan) -> Finished:
    results, missing = {}, []
    for job in plan.jobs():
        info = plan.finished(job)
        if info is None:
            missing.append(job)
        else:
            results[job] = info
    return Finished(results, missing)


def write_report(plan: StudyPlan, finished: Finished | None = None, running: bool = False) -> Path:
    """Every table and figure that the finished runs allow; the missing runs listed at the top (`running`: the
    study is still at work and rewrites the report after each job, a live dashboard)."""
    finished = finished if finished is not None else collect(plan)
    out = paths.study_report(plan.folder)
    token = WRITTEN.set([])
    try:
        sections = [f"# Study `{plan.spec.name}`", plan.spec.description.strip(), _missing_section(finished, running)]
        sections += [section().render(plan, finished, out) for section in report_sections()]
        text = "\n\n".join(s for s in sections if s) + "\n"
        write_text(Section.file(out / "README.md"), text)
        written = sorted(set(WRITTEN.get() or []))
    finally:
        WRITTEN.reset(token)
    write_json(out / REPORT_MANIFEST, {"written_by": "bert-tickets", "files": {n: sha256(out / n) for n in written}})
    return out


# The files this report wrote, by name and SHA-256: a release carries these and nothing a user added beside them.
REPORT_MANIFEST = ".bert-tickets-report.json"

def report_files(report: Path) -> tuple[list[Path], list[str]]:
    """(the files the report's manifest lists, each a regular file still as written; every other name in the
    folder, left out of a release: a user's notes, a link, a file changed since)."""
    try:
        listed = dict(json.loads((report / REPORT_MANIFEST).read_bytes())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        listed = {}
    kept = [report / name for name, digest in sorted(listed.items())
            if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")
            and (report / name).is_file() and not (report / name).is_symlink() and sha256(report / name) == digest]
    others = sorted(p.name for p in report.iterdir() if p.name != REPORT_MANIFEST and p not in kept)
    return kept, others


def _missing_section(finished: Finished, running: bool = False) -> str:
    total = len(finished.results) + len(finished.missing)
    if not finished.missing:
        return f"All {total} runs of the study are finished."
    listed = "\n".join(f"- {job}" for job in finished.missing)
    if running:
        now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        return (f"**The study is running: {len(finished.results)} of {total} runs finished** (this page is "
                f"rewritten after each one; last at {now}). The tables and figures below show the finished runs "
                f"only. Still to come:\n\n{listed}")
    return (f"**{len(finished.missing)} of {total} runs are missing**; the tables and figures below leave them "
            f"out. Rerun the study to compute them:\n\n{listed}")


# --- per-seed views of a finished run ---------------------------------------------------------------------
def _primary(info: TicketInfo) -> str:
    return info["primary_metric"]


def _score(info: TicketInfo, kind: ResultArm = "ticket") -> Mapping[str, Any]:
    """An arm's primary summary with its count of failed runs (from the per-seed records of runs written before the
    summaries carried it), which `is_matching` reads."""
    summary: Mapping[str, Any] = info["metrics"][kind][_primary(info)]
    if summary.get("failed") is None and (failed := failed_seeds(info, kind)) is not None:
        summary = {**summary, "failed": len(failed)}
    return summary


@dataclass(frozen=True)
class Arm:
    """One arm's per-seed scores, and which seeds failed to learn."""

    label: str
    values: dict[int, float]
    failed: set[int] | None

    def failed_text(self) -> str:
        if self.failed is None:
            return "not recorded"
        return f"{len(self.failed)} of {len(self.values)}"


def _arm(method: str, info: TicketInfo, kind: ResultArm = "ticket") -> Arm:
    return Arm(arm_label(method) if kind == "ticket" else arm_label(DENSE), by_seed(info, kind),
               failed_seeds(info, kind))


def recipe_line(plan: StudyPlan) -> str:
    """Model, steps per fine-tuning and level, rate, seeds and searches: the subtitle of every figure."""
    config = plan.spec.config_for(plan.spec.tasks[0], plan.runs_dir)
    t, p = config.training, config.pruning
    budget = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"
    searches = f", {plan.spec.searches} mask searches" if plan.spec.searches > 1 else ""
    precision = resolved_precision(t)  # as the study pinned it where it first ran
    return (f"{Path(config.model.name).name}; {budget} of batch {t.batch_size} per fine-tuning and level, lr "
            f"{t.learning_rate:g}, {'fp32' if precision == 'no' else precision}; {p.rate:.0%} pruned per level; "
            f"{plan.spec.seeds} seeds{searches}")


# --- Table 2: each task's ticket against every baseline at its highest matching sparsity ------------------
def table2_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    """Per task: the sparsity shown (highest where the IMP ticket matches; else the lowest run), then one row
    per arm (dense, IMP, each baseline): mean, std, the matching rule, failed runs, and paired differences by seed
    against dense and against the IMP ticket."""
    rows = []
    for task in plan.spec.tasks:
        tickets = {s: finished.results.get(TicketJob(task, s)) for s in plan.spec.sparsities}
        every = {s: info for s, info in tickets.items() if info is not None}
        # where the baselines ran, when the study names those sparsities (baseline_sparsities)
        done = {s: info for s, info in every.items() if s in plan.baseline_sparsities} or every
        if not done:
            continue
        matching = [s for s, info in done.items() if info["matching"]]
        shown = max(matching) if matching else min(done)
        highest = max((s for s, info in every.items() if info["matching"]), default=None)
        info = done[shown]
        dense, ticket = _score(info, "dense"), by_seed(info)
        arms: list[tuple[str, TicketInfo, ResultArm]] = [(DENSE, info, "dense"), (IMP, info, "ticket")]
        arms += [(m, b, "ticket") for m in plan.spec.baselines
                 if (b := finished.results.get(BaselineJob(task, shown, m))) is not None]
        for method, run, kind in arms:
            score, arm = _score(run, kind), _arm(method, run, kind)
            minus_dense, minus_ticket = paired(arm.values, by_seed(info, "dense")), paired(arm.values, ticket)
            rows.append({
                "task": task, "metric": _primary(info), "sparsity": shown, "highest_matching": shown == highest,
                "highest_matching_sparsity": highest,
                "method": method, "mean": score["mean"], "std": score["std"], "seeds": len(score["values"]),
                "matching": shared_seed_matching(arm.values, by_seed(info, "dense"), arm.failed,
                                                 failed_seeds(info, "dense")) if method != DENSE else None,
                "matching_robust": robust_matching(arm.values, by_seed(info, "dense"), arm.failed,
                                                   failed_seeds(info, "dense")) if method != DENSE else None,
                "at_least_dense_mean": score["mean"] >= dense["mean"],
                "failed": None if arm.failed is None else len(arm.failed),
                **minus_dense.columns("minus_dense"), "paired_seeds": minus_dense.n,
                **{k: v if method not in (DENSE, IMP) else None for k, v in minus_ticket.columns("minus_imp").items()},
                **_cost_columns(run if method != DENSE else None),
                "values": " ".join(f"{v:.6f}" for v in score["values"])})
    return rows


def _cost_columns(info: TicketInfo | None) -> dict[str, Any]:
    """What finding an arm's mask cost (ticket.json's `mask_cost`): fine-tuning steps and seconds of the levels it
    was pruned from, and seconds spent making it; empty for dense and for runs recorded before costs were."""
    cost = (info.get("mask_cost") if info is not None else None) or {}
    seconds = cost.get("seconds") or {}
    return {"mask_fine_tuning_steps": cost.get("fine_tuning_steps"),
            "mask_fine_tuning_seconds": seconds.get("fine_tuning"), "mask_seconds": seconds.get("making_masks")}


def _shown_note(row: dict[str, Any]) -> str:
    if row["highest_matching"]:
        return ""
    if row["highest_matching_sparsity"] is None:
        return " (none matching)"
    return f" (highest matching: {row['highest_matching_sparsity']:.0%}, without baselines)"


def _cell(row: dict[str, Any]) -> str:
    n = row["seeds"]
    spread = f" ± {100 * row['std']:.1f}" if n > 1 else " (n = 1)"
    mark = "" if row["method"] == DENSE else ("*" if row["matching"] else "") + ("†" if row["at_least_dense_mean"]
                                                                                 else "")
    mark += "~" if row["method"] != DENSE and row.get("matching_robust") is False else ""
    return f"{100 * row['mean']:.1f}{spread}{mark}"


class Table2(TableSection):
    """The paper's Table 2: each task's ticket against every arm at its highest matching sparsity."""

    csv_file = "table2.csv"

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        return table2_rows(plan, finished)

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        if seeds := seed_rows(finished):
            write_csv(out / "seeds.csv", seeds)
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        methods = [DENSE, IMP, *plan.spec.baselines]
        by = {(r["task"], r["method"]): r for r in rows}
        first = {t: next(r for r in rows if r["task"] == t) for t in tasks}
        header = "| | " + " | ".join(f"{t} ({metric_label(first[t]['metric'])})" for t in tasks) + " |"
        lines = [header, "|---" * (len(tasks) + 1) + "|"]
        lines.append("| sparsity shown | " + " | ".join(f"{first[t]['sparsity']:.0%}" + _shown_note(first[t])
                                                      for t in tasks) + " |")
        for method in methods:
            cells = [_cell(r) if (r := by.get((t, method))) is not None else "–" for t in tasks]
            lines.append(f"| {arm_label(method)} | " + " | ".join(cells) + " |")
        paired_lines = ["| task | arm | all seeds | failed | − dense, by seed | − IMP ticket, by seed |",
                        "|---|---|---|---|---|---|"]
        for r in rows:
            values = [float(v) for v in r["values"].split()]
            failed = "not recorded" if r["failed"] is None else f"{r['failed']} of {r['seeds']}"
            if r["failed"] and r["failed"] == r["seeds"]:
                failed += " (none learned)"
            minus_dense = "" if r["method"] == DENSE else _paired_text(r["minus_dense"], r["minus_dense_std"],
                                                                       r["paired_seeds"])
            minus_imp = "" if r["minus_imp"] is None else _paired_text(r["minus_imp"], r["minus_imp_std"],
                                                                       r["paired_seeds"])
            paired_lines.append(f"| {r['task']} | {arm_label(r['method'])} | {summary_text(values)} | {failed} | "
                                f"{minus_dense} | {minus_imp} |")
        return ("## Tickets against the baselines (the paper's Table 2)\n\n"
                "Each task at the highest sparsity where its IMP ticket matches dense (or, if none does, the lowest "
                "sparsity run), among the sparsities where the baselines ran; mean ± std over seeds, × 100. "
                f"*: {MATCHING_RULE}. †: at least dense's mean. ~: the matching verdict changes when one seed is left "
                "out of both arms (a fragile verdict). Every arm uses the same recipe and seeds.\n\n"
                + "\n".join(lines)
                + "\n\n### Paired by seed\n\nThe same seed gives every arm the same head initialisation and data "
                "order, so differences are taken seed by seed: the mean difference, its 95% t-interval [low, high] "
                "and the paired t-test's p over n seeds (at n = 3 the interval is ±2.5 standard deviations of the "
                "differences: a difference whose interval holds 0 is not shown to exist, and one whose interval is "
                "wide is not shown to be small). "
                f"Failed runs: {FAILED_RULE}. They are counted per arm beside dense's and stay in every mean: "
                "a mask that makes its runs fail has failed; an arm whose runs failed more often than dense's is not "
                "matching.\n\n" + "\n".join(paired_lines) + "\n\nCSV: [table2.csv](table2.csv); every fine-tuning's "
                "dev score, failure flag, final training loss and the constant prediction's loss and score, seed by "
                "seed: [seeds.csv](seeds.csv)")


def seed_rows(finished: Finished) -> list[dict[str, Any]]:
    """Every finished fine-tuning of the study's runs and baselines, one row per arm and seed: the primary dev score
    and what the failure rule read (final training loss, the constant prediction's loss and score)."""
    rows = []
    for job, info in finished.results.items():
        if not isinstance(job, TicketJob | BaselineJob):
            continue
        for kind in ("ticket", "dense"):
            if kind == "dense" and not isinstance(job, TicketJob):
                continue  # a baseline's dense seeds are its ticket's
            runs: list[Any] = info.get("runs", {}).get(kind) or [{} for _ in info["seeds"]]
            for seed, score, run in zip(info["seeds"], by_seed(info, kind).values(), runs, strict=True):
                rows.append({"task": job.task, "sparsity": job.sparsity, "method": job.method,
                             "search": getattr(job, "search", 0), "arm": kind, "seed": seed,
                             "metric": _primary(info), "score": score, "failed": run.get("failed"),
                             "final_train_loss": run.get("final_train_loss"), "chance_loss": run.get("chance_loss"),
                             "chance_score": run.get("chance_score")})
    return sorted(rows, key=lambda r: (r["task"], r["sparsity"], r["method"], r["search"], r["arm"], r["seed"]))


def _paired_text(mean: float, std: float, n: int) -> str:
    return Paired(mean, std, n, ()).text()


# --- every sparsity the baselines ran at: each arm against dense and against IMP, with intervals -------------------
def paired_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    """Per task and sparsity where the IMP ticket and a baseline are finished: each arm (IMP, each baseline) minus
    dense and minus the IMP ticket, paired by seed, with n, the 95% interval, t and p (table2 shows one sparsity)."""
    rows = []
    for task in plan.spec.tasks:
        for sparsity in plan.baseline_sparsities:
            info = finished.results.get(TicketJob(task, sparsity))
            if info is None:
                continue
            ticket, dense = by_seed(info), by_seed(info, "dense")
            arms = [(IMP, info)] + [(m, b) for m in plan.spec.baselines
                                    if (b := finished.results.get(BaselineJob(task, sparsity, m))) is not None]
            if len(arms) < 2:
                continue
            for method, run in arms:
                arm = _arm(method, run)
                rows.append({"task": task, "metric": _primary(info), "sparsity": sparsity, "method": method,
                             "seeds": len(arm.values), "failed": None if arm.failed is None else len(arm.failed),
                             **paired(arm.values, dense).columns("minus_dense"),
                             **{k: v if method != IMP else None
                                for k, v in paired(arm.values, ticket).columns("minus_imp").items()}})
    return rows


class PairedDifferences(TableSection):
    """Each arm's paired difference to dense and to IMP by seed, at every sparsity."""

    csv_file = "paired.csv"

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        return paired_rows(plan, finished)

    def shown(self, rows: list[dict[str, Any]]) -> bool:
        return len({r["sparsity"] for r in rows}) >= 2  # at one sparsity Table 2's paired rows say it all

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        lines = ["| task | sparsity | arm | failed | − dense, by seed | − IMP ticket, by seed |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            failed = "not recorded" if r["failed"] is None else f"{r['failed']} of {r['seeds']}"
            minus_imp = ("" if r["minus_imp"] is None
                         else _paired_text(r["minus_imp"], r["minus_imp_std"], r["minus_imp_n"]))
            lines.append(f"| {r['task']} | {r['sparsity']:.0%} | {arm_label(r['method'])} | {failed} | "
                         f"{_paired_text(r['minus_dense'], r['minus_dense_std'], r['minus_dense_n'])} | {minus_imp} |")
        return ("## Every sparsity, paired by seed\n\nEach arm minus dense and minus the IMP ticket at every sparsity "
                "where the baselines ran, × 100: the mean difference, its 95% t-interval and the paired t-test's p "
                "over "
                "the seeds both arms ran (`paired.csv` adds t and the exact sign test's p).\n\n" + "\n".join(lines)
                + "\n\nCSV: [paired.csv](paired.csv)")


# --- repeated mask searches: the variance of finding a ticket, not only of fine-tuning it ------------------
def search_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    rows = []
    for task in plan.spec.tasks:
        for sparsity in plan.spec.sparsities:
            infos = {k: info for k in range(plan.spec.searches)
                     if (info := finished.results.get(TicketJob(task, sparsity, search=k))) is not None}
            if len(infos) < 2 or 0 not in infos:
                continue
            first = by_seed(infos[0])
            for k, info in infos.items():
                arm, versus = _arm(IMP, info), paired(by_seed(info), first)
                score = _score(info)
                rows.append({"task": task, "sparsity": sparsity, "search": k + 1,
                             "search_seed": plan.ticket_run(task, sparsity, k).seed, "metric": _primary(info),
                             "mean": score["mean"], "std": score["std"], "seeds": len(score["values"]),
                             "failed": None if arm.failed is None else len(arm.failed),
                             "minus_search_1": versus.mean if k else None,
                             "minus_search_1_std": versus.std if k else None, "paired_seeds": versus.n,
                             "matching": info["matching"]})
    return rows


class RepeatedSearches(TableSection):
    """Repeated IMP mask searches: how far their tickets' scores spread."""

    csv_file = "searches.csv"

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        return search_rows(plan, finished)

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        lines = ["| task | sparsity | search (level seed) | ticket, all seeds | − search 1, by seed | failed "
                 "| matching |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            spread = f" ± {100 * r['std']:.1f}" if r["seeds"] > 1 else ""
            versus = "" if r["minus_search_1"] is None else _paired_text(r["minus_search_1"], r["minus_search_1_std"],
                                                                         r["paired_seeds"])
            failed = "not recorded" if r["failed"] is None else f"{r['failed']} of {r['seeds']}"
            lines.append(f"| {r['task']} | {r['sparsity']:.0%} | {r['search']} ({r['search_seed']}) | "
                         f"{100 * r['mean']:.1f}{spread} (n = {r['seeds']}) | {versus} | {failed} | "
                         f"{matching_mark(r['matching'])} |")
        spreads = []
        for (task, sparsity), group in _groups(rows, ("task", "sparsity")).items():
            means = [r["mean"] for r in group]
            spreads.append(f"{task} at {sparsity:.0%}: the searches' means span {100 * (max(means) - min(means)):.1f} "
                           f"points (std across searches {100 * mean_std(means)[1]:.1f}, {len(means)} searches)")
        return ("## Repeated mask searches\n\nEach search is IMP run again with another seed for its levels (head, "
                "data "
                "order, dropout), then evaluated over the same seeds as the first, so searches pair seed by seed. "
                "The spread across searches is the part of a ticket's variance that fine-tuning one mask again "
                "cannot show; the masks' overlap across searches (below) is the noise floor for every cross-task "
                "overlap.\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in spreads)
                + "\n\nCSV: [searches.csv](searches.csv)")


def _groups(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


# --- curves: score against sparsity, IMP and every baseline, seed bands, the dense band -------------------
def curve_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    rows = []
    for job, info in finished.results.items():
        if not isinstance(job, TicketJob | BaselineJob) or job.task not in plan.spec.tasks:  # a source-only
            continue  # ticket is one point, no curve; a cell is another task's mask
        search = job.search if isinstance(job, TicketJob) else 0
        method = f"{job.method}{SEARCH}{search + 1}" if search else job.method
        rows.append(_curve_point(job.task, method, job.sparsity, info, _score(info)))
        if isinstance(job, TicketJob):
            rows.append(_curve_point(job.task, DENSE, 0.0, info, _score(info, "dense")))
    unique = {(r["task"], r["method"], r["sparsity"]): r for r in rows}
    return sorted(unique.values(), key=lambda r: (r["task"], r["method"], r["sparsity"]))


def _curve_point(task: str, method: str, sparsity: float, info: TicketInfo, score: Mapping[str, Any]) -> dict:
    return {"task": task, "method": method, "sparsity": sparsity, "metric": _primary(info), "mean": score["mean"],
            "std": score["std"], "seeds": len(score["values"]), "failed": score.get("failed"),
            "values": " ".join(f"{v:.6f}" for v in score["values"])}


class Curves(TableSection):
    """Score against sparsity for every arm (the paper's figure of curves)."""

    csv_file = "curves.csv"

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        return curve_rows(plan, finished)

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        subtitle = recipe_line(plan)
        chance = {task: constant_score(plan, task) for task in dict.fromkeys(r["task"] for r in rows)}
        searches = [f"{IMP}{SEARCH}{k + 1}" for k in range(1, plan.spec.searches)]
        _save_figure(out / "curves.png", lambda: _plot_curves(rows, [IMP, *searches, *plan.spec.baselines], subtitle,
                                                              chance))
        return ("## Score against sparsity\n\n![score against sparsity](curves.png)\n\n"
                "Top row: every arm; markers: mean over seeds, error bars ± one standard deviation (baselines offset "
                "sideways so that none hides another); grey band: dense, mean ± one standard deviation; dotted line: "
                "always predicting the training set's majority class (0 for a correlation), where a run that never "
                "learned sits; a hollow ring: some of the point's runs failed to learn (how many beside it), or it is "
                "one seed (n = 1). Bottom row: the same, zoomed on dense and the tickets; an arm beyond the zoom is an "
                "arrow at its edge with its mean. CSV: [curves.csv](curves.csv)")


# --- what each mask cost ----------------------------------------------------------------------------------
def cost_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    """Every arm at every sparsity (each task's first mask search) with its score and what finding its mask cost
    (ticket.json's `mask_cost`, on the machine that ran it), and that cost as a fraction of the IMP ticket's."""
    rows = []
    for job, info in finished.results.items():
        cost = info.get("mask_cost")
        if not isinstance(job, TicketJob | BaselineJob) or job.task not in plan.spec.tasks or not cost \
                or (isinstance(job, TicketJob) and job.search):
            continue
        seconds, score = cost.get("seconds") or {}, _score(info)
        making = seconds.get("making_masks")
        rows.append({"task": job.task, "method": job.method, "sparsity": job.sparsity, "metric": _primary(info),
                     "mean": score["mean"], "std": score["std"], "seeds": len(score["values"]),
                     "levels_trained": cost["levels_trained"], "fine_tuning_steps": cost["fine_tuning_steps"],
                     "fine_tuning_seconds": seconds.get("fine_tuning"), "mask_seconds": making,
                     "total_seconds": (seconds.get("fine_tuning") or 0.0) + (making or 0.0)})
    imp = {(r["task"], r["sparsity"]): r["total_seconds"] for r in rows if r["method"] == IMP}
    for r in rows:
        whole = imp.get((r["task"], r["sparsity"]))
        r["fraction_of_imp"] = r["total_seconds"] / whole if whole else None
    return sorted(rows, key=lambda r: (r["task"], r["sparsity"], r["total_seconds"]))


class Cost(TableSection):
    """What each mask cost to find, against its score."""

    csv_file = "cost.csv"

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        return cost_rows(plan, finished)

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        dense = {r["task"]: r for r in curve_rows(plan, finished) if r["method"] == DENSE}
        _save_figure(out / "cost.png", lambda: _plot_cost(rows, dense, recipe_line(plan)))
        lines = ["| task | sparsity | arm | score | fine-tuning steps | seconds finding the mask | of IMP's |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            fraction = "–" if r["fraction_of_imp"] is None else f"{r['fraction_of_imp']:.3g}"
            lines.append(f"| {r['task']} | {r['sparsity']:.0%} | {arm_label(r['method'])} | "
                         f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f} (n = {r['seeds']}) | "
                         f"{r['fine_tuning_steps']} | {r['total_seconds']:.1f} | {fraction} |")
        return ("## Score against the compute of finding the mask\n\n![score against cost](cost.png)\n\n"
                "What finding each mask cost on the machine that ran it: the fine-tuning steps and seconds of the "
                "levels "
                "it was pruned from (IMP's dense level and every level before the last; none for masks made from θ0), "
                "plus the seconds spent making the masks (calibration, scoring, sorting); the last column divides by "
                "the "
                "IMP ticket's at the same sparsity. The evaluation's fine-tunings, alike for every arm, are not "
                "counted. "
                "Seconds are wall time of one process; compare them within one study.\n\n" + "\n".join(lines)
                + "\n\nCSV: [cost.csv](cost.csv)")


def _plot_cost(rows: list[dict[str, Any]], dense: dict[str, dict[str, Any]], subtitle: str):
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    sparsities = sorted({r["sparsity"] for r in rows})
    markers = dict(zip(sparsities, "osD^v<>p*h", strict=False))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks) + 0.4, 4.6), dpi=110, squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        if (d := dense.get(task)) is not None:
            ax.axhspan(100 * (d["mean"] - d["std"]), 100 * (d["mean"] + d["std"]), color="0.88",
                       label="dense, mean ± 1 std")
        for r in (r for r in rows if r["task"] == task):
            ax.errorbar([max(r["total_seconds"], 0.01)], [100 * r["mean"]], yerr=[100 * r["std"]], capsize=3,
                        marker=markers.get(r["sparsity"], "o"), ms=6, color=arm_color(r["method"]), ls="none",
                        label=curve_label(r["method"]))
        ax.set_xscale("log")
        ax.set_xlabel("seconds spent finding the mask (log; 0 drawn at 0.01)")
        ax.set_ylabel(metric_label(next(r["metric"] for r in rows if r["task"] == task)))
        ax.set_title(task)
        ax.grid(alpha=0.3, which="both")
    extra = {f"{sparsity:.0%} sparsity": plt.Line2D([], [], color="0.3", marker=marker, ls="none")
             for sparsity, marker in markers.items()}
    _legend_and_subtitle(fig, axes, subtitle, margins=(0.02, 0.045, 0.93), extra=extra)
    return fig


def constant_score(plan: StudyPlan, task: str) -> float | None:
    """The primary metric of always predicting the training set's majority class on the dev set (0 for a
    correlation); None where that needs more than reading local label files (the Hub, SQuAD, masked-LM)."""
    adapter = get_task(task)
    if not hasattr(adapter, "load_raw") or not hasattr(adapter, "is_regression"):
        return None
    if adapter.is_regression:
        return 0.0
    data = plan.spec.config_for(task, plan.runs_dir).data
    if data.data_dir is None:
        return None
    try:
        return raw_constant_score(adapter, data.data_dir, data.max_eval_samples)
    except (UserError, OSError):
        return None


def _plot_curves(rows: list[dict[str, Any]], methods: list[str], subtitle: str, chance: dict[str, float | None]):
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.8 * len(tasks) + 0.4, 7.4), dpi=110, squeeze=False)
    offsets = {m: 0.9 * (i - (len(methods) - 1) / 2) for i, m in enumerate(methods)}  # % of sparsity
    for col, task in enumerate(tasks):
        mine = [r for r in rows if r["task"] == task]
        for ax in axes[:, col]:
            _plot_task(ax, mine, methods, offsets)
            if (level := chance.get(task)) is not None:
                ax.axhline(100 * level, color="0.2", ls=":", lw=1.2, label="majority class (0 for correlations)")
        axes[0, col].set_title(task)
        _zoom(axes[1, col], mine, offsets)
        axes[1, col].set_title(f"{task}, zoomed on dense and the tickets", fontsize=9)
    _legend_and_subtitle(fig, axes, subtitle, margins=(0.01, 0.032, 0.95))
    return fig


def _legend_and_subtitle(fig: Any, axes: Any, subtitle: str, margins: tuple[float, float, float],
                         extra: dict[str, Any] | None = None) -> None:
    """One legend below the panels (every label of every panel once, then `extra`) and the recipe as the title;
    `margins`: the figure fractions (bottom, per legend row, top) that the panels leave free for them."""
    legend: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    legend |= extra or {}
    width = fig.get_size_inches()[0]
    ncol = max(1, min(len(legend), int(width / 2.6)))  # about 2.6 inches an entry: none cut off at the edges
    bottom, per_row, top = margins
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle("\n".join(textwrap.wrap(subtitle, int(15 * width))), fontsize=8)
    fig.tight_layout(rect=(0, bottom + per_row * -(-len(legend) // ncol), 1, top))


def _plot_task(ax: Any, mine: list[dict[str, Any]], methods: list[str], offsets: dict[str, float]) -> None:
    for d in (r for r in mine if r["method"] == DENSE):
        ax.axhspan(100 * (d["mean"] - d["std"]), 100 * (d["mean"] + d["std"]), color="0.88",
                   label="dense, mean ± 1 std")
        ax.axhline(100 * d["mean"], color="0.45", lw=1)
    for rank, method in enumerate(methods):
        points = sorted((r for r in mine if r["method"] == method), key=lambda r: r["sparsity"])
        if not points:
            continue
        x = [100 * r["sparsity"] + offsets[method] for r in points]
        y = [100 * r["mean"] for r in points]
        s = [100 * r["std"] if r["seeds"] > 1 else 0.0 for r in points]
        ax.errorbar(x, y, yerr=s, marker="o", ms=4, capsize=3, color=arm_color(method), label=curve_label(method),
                    lw=2 if method == IMP else 1.0, ls="-" if len(points) > 1 else "none")
        for xi, yi, r in zip(x, y, points, strict=True):  # what a mean hides: failed runs, a single seed
            marks = ([f"{r['failed']} failed"] if r.get("failed") else []) + (["n = 1"] if r["seeds"] == 1 else [])
            if marks:
                ax.plot([xi], [yi], marker="o", ms=8, mfc="white", mec=arm_color(method), mew=1.5, ls="none",
                        zorder=3)
                ax.annotate(", ".join(marks), (xi, yi), textcoords="offset points", xytext=(6, 4 + 9 * (rank % 3)),
                            fontsize=7, color=arm_color(method), annotation_clip=True)  # arms at one x: stacked
    ax.set_xlim(-5, 100 * max(r["sparsity"] for r in mine) + 8)  # from dense (0%) on, even with one sparsity
    ax.set_xlabel("sparsity (% of prunable weights pruned)")
    ax.set_ylabel(metric_label(mine[0]["metric"]))
    ax.grid(alpha=0.3)


def _zoom(ax: Any, mine: list[dict[str, Any]], offsets: dict[str, float] | None = None) -> None:
    """Limits that hold dense's band and every arm within 6 points of dense's mean (the tickets)."""
    dense = next((r for r in mine if r["method"] == DENSE), None)
    if dense is None:
        return
    centre = 100 * dense["mean"]
    near = [100 * r["mean"] for r in mine if abs(100 * r["mean"] - centre) <= 6] + [
        centre - 100 * dense["std"], centre + 100 * dense["std"]]
    spread = [100 * r["std"] for r in mine if abs(100 * r["mean"] - centre) <= 6]
    pad = max(spread + [0.5])
    low, high = min(near) - pad - 0.3, max(near) + pad + 0.3
    ax.set_ylim(low, high)
    stacked: dict[tuple[float, str], int] = {}
    for r in mine:  # an arm beyond the zoom stays in it: an arrow at the edge, with its mean (stacked per sparsity)
        value = 100 * r["mean"]
        if low <= value <= high or r["method"] == DENSE:
            continue
        edge, marker = (low, "v") if value < low else (high, "^")
        x = 100 * r["sparsity"] + (offsets or {}).get(r["method"], 0.0)
        k = stacked[(r["sparsity"], marker)] = stacked.get((r["sparsity"], marker), -1) + 1
        ax.plot([x], [edge], marker=marker, ms=7, color=arm_color(r["method"]), ls="none", clip_on=False)
        ax.annotate(f"{value:.1f}", (x, edge), textcoords="offset points",
                    xytext=(6, 4 + 9 * k if marker == "v" else -10 - 9 * k), fontsize=7, color=arm_color(r["method"]))


SEARCH = "@search"  # a repeated mask search's curve: "imp@search2"


def curve_label(method: str) -> str:
    if SEARCH in method:
        name, k = method.split(SEARCH)
        return f"{arm_label(name)}, mask search {k}"
    return arm_label(method)


def arm_color(arm: str) -> str:
    """One colour per arm in every figure of every study (the methods' registry order)."""
    from bert_tickets.methods import METHODS

    if SEARCH in arm:  # the ticket's other searches: lighter blues
        return ["#6baed6", "#9ecae1", "#c6dbef"][(int(arm.split(SEARCH)[1]) - 2) % 3]
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#000000", "#a6761d", "#666699"]  # the last three: Wanda, SparseGPT's mask, SparseGPT's weights
    order = [IMP, *[m for m in METHODS if m != IMP]]
    return "0.35" if arm == DENSE else palette[order.index(arm) % len(palette)]


# --- transfer ----------------------------------------------------------------------------------------------
def transfer_rows(table: dict[str, Any], results: dict[Cell, TicketInfo], owns: dict[str, TicketInfo],
                  targets: list[str]) -> list[dict[str, Any]]:
    """Every cell: its score, its difference from the target's own ticket paired by seed (from the matrix's `table`,
    built with each target's own ticket, `owns`), and the share of the own ticket's gain over random pruning that it
    recovers."""
    rows = []
    for target in targets:
        own, random_mean = owns[target], _score(results[Cell(RANDOM, target)])["mean"]
        gain = _score(own)["mean"] - random_mean
        for source in (r for r in table["rows"] if r != DENSE):
            info, cell = results[Cell(parse_source(source), target)], table["cells"][source][target]
            failed, score = failed_seeds(info), _score(info)
            rows.append({"source": source, "target": target, "metric": _primary(info), "mean": score["mean"],
                         "std": score["std"], "seeds": len(score["values"]),
                         "failed": None if failed is None else len(failed),
                         "minus_own": cell["minus_own"], "minus_own_std": cell["minus_own_std"],
                         "paired_seeds": cell["paired_seeds"],
                         "gain_over_random_recovered": (score["mean"] - random_mean) / gain if gain else float("nan"),
                         # the cell's own dense seeds, as the heatmap's mark (transfer.table) reads them
                         "matching": shared_seed_matching(by_seed(info), by_seed(info, "dense"), failed,
                                                          failed_seeds(info, "dense")),
                         "diagonal": source == target})
    return rows


class Transfer(Section):
    """The transfer matrix: each row's mask fine-tuned on each target."""

    def render(self, plan: StudyPlan, finished: Finished, out: Path) -> str:
        if plan.matrix is None:
            return ""
        matrix = copy.copy(plan.matrix)  # the report's view: only complete targets; the plan's matrix stays whole
        every = [Cell(s, t) for s in matrix.rows for t in matrix.targets]
        cells = {c: info for c in every if (info := finished.results.get(CellJob.of(c, plan))) is not None}
        owns = {t: info for t in matrix.targets
                if (info := finished.results.get(TicketJob(t, matrix.sparsity))) is not None}
        complete = [t for t in matrix.targets if all(Cell(s, t) in cells for s in matrix.rows)
                    and t in owns]
        if not complete:
            return "## Transfer between tasks\n\nNo target has all its cells (and its own ticket) yet."
        matrix.targets = complete
        results = {Cell(s, t): cells[Cell(s, t)] for s in matrix.rows for t in complete}
        # the matrix's table with each target's own ticket as its diagonal (also where the target is no source): the
        # paired differences are computed there once, for the figure and the rows alike
        table = matrix.table(results | {Cell(parse_source(t), t): owns[t] for t in complete})
        rows = transfer_rows(table, results, owns, complete)
        write_text(Section.file(out / "transfer.csv"), long_csv(matrix.long_rows(results)))
        write_csv(out / "transfer_paired.csv", rows)
        write_heatmap(table, Section.file(out / "transfer.png"), recipe_line(plan))
        dense = {t: _score(results[Cell(RANDOM, t)], "dense") for t in complete}
        metrics = {r["target"]: r["metric"] for r in rows}
        lines = ["| mask from \\ target | " + " | ".join(f"{t} ({metric_label(metrics[t])})" for t in complete) + " |",
                 "|---" * (len(complete) + 1) + "|"]
        by = {(r["source"], r["target"]): r for r in rows}
        for source in matrix.rows:
            cells_text: list[str] = []
            for t in complete:
                r = by[(source.name, t)]
                values = _score(results[Cell(source, t)])["values"]
                text = summary_text(values)
                if source.name != t:
                    text += f"; − own {_paired_text(r['minus_own'], r['minus_own_std'], r['paired_seeds'])}"
                    recovered = r["gain_over_random_recovered"]
                    if source != RANDOM and recovered == recovered:  # NaN: the own ticket is no better than random
                        text += f"; {100 * recovered:.0f}% of the gain over random"
                text += f"; {matching_mark(r['matching'])}"
                cells_text.append(text)
            lines.append(f"| {source.label} | " + " | ".join(cells_text) + " |")
        lines.append("| dense (reference) | " + " | ".join(summary_text(dense[t]["values"]) for t in complete) + " |")
        skipped = [t for t in plan.spec.transfer.targets if t not in complete] if plan.spec.transfer else []
        note = f"\n\nTargets left out until all their cells and their own ticket are done: {', '.join(skipped)}." \
            if skipped else ""
        return (f"## Transfer between tasks ({matrix.sparsity:.0%} masks)\n\n![transfer](transfer.png)\n\n"
                "Each cell: the mask from the row's source applied to θ0 and fine-tuned on the column's target; × 100, "
                "all seeds; − own: the cell minus the target's own IMP ticket, paired by seed; % of the gain over "
                "random: (cell − random pruning) / (own ticket − random pruning). "
                f"{MATCHING_RULE}.\n\n" + "\n".join(lines)
                + "\n\nCSV: [transfer.csv](transfer.csv) (every seed), [transfer_paired.csv](transfer_paired.csv)"
                + note)


# --- what the masks look like ---------------------------------------------------------------------------
def layer_of(name: str) -> str:
    found = re.search(r"layer\.(\d+)\.", name)
    return found.group(1) if found else "pooler"


class Masks(Section):
    """How alike the tickets' masks are, and where they prune, layer by layer."""

    def render(self, plan: StudyPlan, finished: Finished, out: Path) -> str:
        sparsity = plan.spec.transfer.sparsity if plan.spec.transfer else max(plan.spec.sparsities)
        if sparsity not in plan.spec.sparsities:
            sparsity = max(plan.spec.sparsities)
        masks = ticket_masks(plan, finished, sparsity)
        if len(masks) < 2:  # one ticket against itself says nothing
            return ""
        theta0_run = plan.ticket_run(plan.spec.tasks[0], sparsity)
        pruning = theta0_run.config.pruning
        theta0 = theta0_run.resources.theta0_prunable()
        masks[THETA0_MAGNITUDE] = magnitude_mask(theta0, full_mask(theta0), sparsity, pruning.scope)
        overlap = mask_overlap(masks)
        write_csv(out / "mask_overlap.csv", [{"a": a, "b": b, "jaccard": v} for (a, b), v in overlap.items()])
        tickets = {name: mask for name, mask in masks.items() if name != THETA0_MAGNITUDE}
        layers = layer_sparsity(masks)  # θ0's own magnitude profile beside the tickets': what they mostly show
        write_csv(out / "mask_layers.csv", layers)
        chance = (1 - sparsity) / (1 + sparsity)
        subtitle = recipe_line(plan)
        _save_figure(out / "mask_overlap.png", lambda: _plot_overlap(list(masks), overlap, sparsity, chance, subtitle))
        _save_figure(out / "mask_layers.png", lambda: _plot_layers(layers, sparsity, subtitle))
        floor = overlap_floor_rows(list(tickets), overlap)
        write_csv(out / "mask_overlap_floor.csv", floor)
        floor_lines = ["| pair of masks | Jaccard |", "|---|---|"]
        floor_lines += [f"| {r['kind']}: {r['a']} / {r['b']} | {r['jaccard']:.4f} |" for r in floor]
        floor_lines.append(f"| two independent random masks (expected) | {chance:.4f} |")
        return (f"## What the masks look like ({sparsity:.0%} IMP tickets)\n\n"
                f"![mask overlap](mask_overlap.png)\n\nPairwise overlap of the kept weights (Jaccard: shared kept / "
                f"kept by either), with θ0 pruned once by global magnitude to the same sparsity (no training) and, "
                "where the study repeats the mask search, each task's other searches (`#2`, ...). Two masks found "
                "on the same task by different searches set the noise floor: a cross-task overlap is only evidence "
                "of task-specific masks where it lies below it. Two independent random masks at this sparsity "
                f"overlap {chance:.2f}.\n\n" + "\n".join(floor_lines) + "\n\n"
                "![sparsity per layer and matrix type](mask_layers.png)\n\n"
                "Sparsity of each ticket per encoder layer and matrix type (where tickets agree, their lines lie on "
                f"top of each other), over the thick grey line of θ0 pruned once by magnitude (`{THETA0_MAGNITUDE}` in "
                "the CSV): how far a ticket's profile is θ0's own. CSV: [mask_overlap.csv](mask_overlap.csv), "
                "[mask_overlap_floor.csv](mask_overlap_floor.csv), [mask_layers.csv](mask_layers.csv)")


THETA0_MAGNITUDE = "θ0 magnitude"


def ticket_masks(plan: StudyPlan, finished: Finished, sparsity: float) -> dict[str, dict[str, torch.Tensor]]:
    """Every finished IMP ticket's mask at `sparsity`: each task's first search under its name, repeats as
    `task #k`, and the transfer sources' tickets."""
    masks = {}
    for task in dict.fromkeys(plan.spec.tasks + plan.spec.ticket_sources):  # sources' tickets too (masked-LM's)
        searches = plan.spec.searches if task in plan.spec.tasks else 1
        for k in range(searches):
            if TicketJob(task, sparsity, search=k) in finished.results:
                name = task if k == 0 else f"{task} #{k + 1}"
                masks[name] = load_mask(paths.mask(plan.ticket_run(task, sparsity, k).ticket_dir()))
    return masks


def overlap_floor_rows(names: list[str], overlap: dict[tuple[str, str], float]) -> list[dict[str, Any]]:
    """The overlaps a reader compares: same task across searches (the noise floor), across tasks, and each
    ticket against θ0's own magnitude mask."""
    def task_of(name: str) -> str:
        return name.split(" #")[0]

    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            kind = "same task, another search" if task_of(a) == task_of(b) else "across tasks"
            rows.append({"kind": kind, "a": a, "b": b, "jaccard": overlap[(a, b)]})
    rows += [{"kind": "against one-shot θ0 magnitude", "a": a, "b": THETA0_MAGNITUDE,
              "jaccard": overlap[(a, THETA0_MAGNITUDE)]} for a in names]
    order = ["same task, another search", "across tasks", "against one-shot θ0 magnitude"]
    return sorted(rows, key=lambda r: order.index(r["kind"]))


def mask_overlap(masks: dict[str, dict[str, torch.Tensor]]) -> dict[tuple[str, str], float]:
    """Jaccard overlap of the kept weights of every pair of masks, over the entries both hold."""
    return {(a, b): jaccard(masks[a], masks[b]) for a in masks for b in masks}


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


def _plot_overlap(names: list[str], overlap: dict[tuple[str, str], float], sparsity: float, chance: float,
                  subtitle: str):
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.array([[overlap[(a, b)] for b in names] for a in names])
    off_diagonal = values[~np.eye(len(names), dtype=bool)]
    # a scale from just below the smallest overlap to 1: 0.97 and 0.99 get different colours; random masks'
    # overlap (far below) is given in the title instead of stretching the scale
    low = max(0.0, float(np.floor(100 * np.nanmin(off_diagonal)) / 100) - 0.01)
    fig, ax = plt.subplots(figsize=(2.4 + 1.05 * len(names), 1.9 + 0.8 * len(names)), dpi=110)
    image = ax.imshow(values, cmap="magma", vmin=low, vmax=1)
    ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), labels=names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if values[i, j] > low + 0.55 * (1 - low) else "white")
    fig.colorbar(image, ax=ax, label="Jaccard overlap of kept weights")
    title = f"Mask overlap at {sparsity:.0%} sparsity (two random masks: {chance:.2f})"
    ax.set_title("\n".join([title, *textwrap.wrap(subtitle, int(14 * fig.get_size_inches()[0]))]), fontsize=8)
    fig.tight_layout()
    return fig


# --- how far fine-tuning moves the weights ------------------------------------------------------------------
def drift_rows(plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
    """Per IMP level of each task's first search: relative drift ||θ_T − θ_start|| / ||θ_start|| per matrix type,
    and how close the level's mask is to θ0's own magnitude ranking (levels recorded before these were: none)."""
    rows = []
    for task in plan.spec.tasks:
        done = [s for s in plan.spec.sparsities if TicketJob(task, s) in finished.results]
        if not done:
            continue
        run = plan.ticket_run(task, max(done))
        for k in run.trained_levels:
            record = run.level_record(k)
            if not record.get("drift"):
                continue
            rows.append({"task": task, "level": k, "sparsity": run.sparsities[k],
                         "jaccard_to_theta0_magnitude": record.get("jaccard_to_theta0_magnitude"),
                         **{f"drift_{kind}": value for kind, value in record["drift"].items()}})
    return rows


class Drift(TableSection):
    """How far fine-tuning moves the weights that masks keep."""

    csv_file = "drift.csv"

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        return drift_rows(plan, finished)

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        kinds = [key.removeprefix("drift_") for key in rows[0] if key.startswith("drift_") and key != "drift_all"]
        lines = ["| task | level (sparsity) | all | " + " | ".join(kinds) + " | mask vs θ0 magnitude (Jaccard) |",
                 "|---" * (len(kinds) + 4) + "|"]
        for r in rows:
            jac = r["jaccard_to_theta0_magnitude"]
            lines.append(f"| {r['task']} | {r['level']} ({r['sparsity']:.0%}) | {r['drift_all']:.4f} | "
                         + " | ".join(f"{r.get(f'drift_{k}', float('nan')):.4f}" for k in kinds)
                         + f" | {'–' if jac is None else f'{jac:.4f}'} |")
        return ("## How far fine-tuning moves the weights\n\nRelative drift of the prunable weights over one "
                "fine-tuning, ‖θ_T − θ_start‖ / ‖θ_start‖ (Frobenius norms pooled per matrix type), for each IMP level "
                "of each task's first search, and the Jaccard overlap of the mask that level trained with and θ0 "
                "pruned once by magnitude to the same sparsity. Small drift means the next magnitude ranking is "
                f"mostly θ0's own. {recipe_line(plan)}.\n\n" + "\n".join(lines) + "\n\nCSV: [drift.csv](drift.csv)")


def _plot_layers(rows: list[dict[str, Any]], sparsity: float, subtitle: str = ""):
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
            if task == THETA0_MAGNITUDE:  # the reference under the tickets: thick, grey, drawn first
                ax.plot([p[0] for p in points], [100 * p[1] for p in points], color="0.55", lw=5, alpha=0.5,
                        label=f"{task} (no training)", zorder=1)
                continue
            line, marker, size = styles[i % len(styles)]
            ax.plot([p[0] for p in points], [100 * p[1] for p in points], ls=line, marker=marker, ms=size,
                    label=task, alpha=0.85, zorder=2)
        ax.axhline(100 * sparsity, color="0.6", lw=1, ls="--")
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("sparsity (%)")
    axes.flat[-1].legend(fontsize=8, loc="best")
    if subtitle:
        fig.suptitle("\n".join(textwrap.wrap(subtitle, int(15 * fig.get_size_inches()[0]))), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9 if subtitle else 1))
    return fig


# --- files -------------------------------------------------------------------------------------------------
def _save_figure(path: Path, make) -> None:
    """Save the figure `make()` returns atomically (not at all if the same PNG is there)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig = make()
    fig.savefig(png, format="png")
    plt.close(fig)
    write_bytes(Section.file(path), png.getvalue())


# every built-in section, in the report's order: one line each
SECTIONS: list[type[Section]] = [Table2, PairedDifferences, RepeatedSearches, Curves, Cost, Transfer, Masks, Drift]


def report_sections() -> list[type[Section]]:
    """The registry's sections, then each job kind's own (`Job.report_section`), each once."""
    kinds = [kind.report_section for kind in JOB_KINDS if kind.report_section is not None]
    return list(dict.fromkeys([*SECTIONS, *kinds]))
