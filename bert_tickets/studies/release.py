"""A whole study on the Hub in one command: one model repository per finished ticket, the study's report as a
dataset repository (its CSV tables load with `datasets`), and a Hub collection that lists them all.

    bert-tickets push --study runs/studies/minilm --repo-prefix OWNER/minilm-tickets [--dry-run OUT]

Repositories are named `<prefix>-<task>-<sparsity in %>` (50, or 50.4: the exact sparsity) and `<prefix>-report`.
`--dry-run OUT` writes every folder, verified, plus `collection.json` (what the collection would hold),
and uploads nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bert_tickets import paths
from bert_tickets.errors import UserError
from bert_tickets.files import usable_folder, write_json, write_text
from bert_tickets.ranks import log
from bert_tickets.release.folder import inside, replace_owned, staging
from bert_tickets.release.hub import PushOptions, check_repo_id, export_ticket, push_to_hub
from bert_tickets.studies.jobs import TicketJob
from bert_tickets.studies.plan import load_plan
from bert_tickets.studies.report import report_files, write_report

COLLECTION_FILE = "collection.json"
TITLE_LIMIT = 59  # the Hub refuses collection titles of 60 characters or more
NOTE_LIMIT = 500


@dataclass(frozen=True)
class Release:
    """One ticket of the study and the repository it goes to."""

    task: str
    sparsity: float
    ticket_dir: Path
    repo_id: str

    @property
    def note(self) -> str:
        return f"{self.task} ticket at {paths.sparsity_percent(self.sparsity)}% sparsity"


def plan_releases(study_dir: str | Path, repo_prefix: str) -> tuple[Any, list[Release]]:
    """The study's finished IMP tickets (the ones its report is about) and their repository ids."""
    check_repo_id(repo_prefix, "--repo-prefix")
    plan = load_plan(study_dir)
    releases: list[Release] = []
    for job in plan.jobs():
        if not isinstance(job, TicketJob) or job.search:  # a repeated mask search is a control, not a release
            continue
        run = plan.ticket_run(job.task, job.sparsity)
        if run.finished_ticket() is None:
            log(f"skipping {job}: not finished (rerun the study to compute it)")
            continue
        repo_id = f"{repo_prefix}-{job.task}-{paths.sparsity_percent(job.sparsity)}"
        check_repo_id(repo_id, "--repo-prefix")
        if any(r.repo_id == repo_id for r in releases):  # one repository, one ticket: never overwrite another
            raise UserError(f"two tickets of the study would both be released as {repo_id}: their sparsities differ "
                            "only beyond ten digits")
        releases.append(Release(job.task, job.sparsity, run.ticket_dir(), repo_id))
    if not releases:
        raise UserError(f"{study_dir} has no finished ticket yet: run the study first")
    return plan, releases


def push_study(study_dir: str | Path, repo_prefix: str, options: PushOptions | None = None,
               dry_run: str | None = None) -> str:
    """Export (and, without `dry_run`, upload) every finished ticket, the report and the collection; returns the
    collection's URL, or the dry-run folder."""

    options = options or PushOptions()
    plan, releases = plan_releases(study_dir, repo_prefix)
    report_id = f"{repo_prefix}-report"
    check_repo_id(report_id, "--repo-prefix")
    report = write_report(plan)  # fresh from the finished runs (never trains)
    collection = collection_spec(plan.spec, repo_prefix, releases, report_id, options.private)
    if dry_run is not None:
        out = Path(dry_run)
        usable_folder(out)
        if any(out.iterdir()) and not (out / COLLECTION_FILE).is_file():
            raise UserError(f"{out} is not empty and not an earlier study export: choose another --dry-run folder "
                            "(nothing was changed)")
        for name in [*(r.repo_id.split("/")[1] for r in releases), report_id.split("/")[1], COLLECTION_FILE]:
            inside(out, name, "the study's export")  # a linked sub-folder or file is never written through
        for release in releases:
            export_ticket(release.ticket_dir, out / release.repo_id.split("/")[1], release.repo_id)
        write_report_repo(report, out / report_id.split("/")[1], plan.spec)
        write_json(out / COLLECTION_FILE, collection)
        return str(out)
    with tempfile.TemporaryDirectory() as tmp:
        for i, release in enumerate(releases, 1):
            log(f"push {i}/{len(releases)}: {release.note} -> {release.repo_id}")
            folder = export_ticket(release.ticket_dir, Path(tmp) / f"ticket_{i}", release.repo_id)
            push_to_hub(folder, release.repo_id, options)
        folder = write_report_repo(report, Path(tmp) / "report", plan.spec)
        push_to_hub(folder, report_id, options, repo_type="dataset", message="Upload study report (bert-tickets)")
    return create_collection(collection)


def collection_spec(spec: Any, repo_prefix: str, releases: list[Release], report_id: str,
                    private: bool) -> dict[str, Any]:
    title = f"bert-tickets: {spec.name}"[:TITLE_LIMIT]
    description = (spec.description.strip().splitlines() or [""])[0][:150]
    items = [{"item_id": r.repo_id, "item_type": "model", "note": r.note[:NOTE_LIMIT]} for r in releases]
    items.append({"item_id": report_id, "item_type": "dataset",
                  "note": "the study's report: tables (CSV), figures and the paper's numbers side by side"})
    return {"title": title, "namespace": repo_prefix.split("/")[0], "description": description or None,
            "private": private, "items": items}


def create_collection(collection: dict[str, Any]) -> str:
    """Create the collection (or reuse the one with the same title) and add every item once."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        made = api.create_collection(title=collection["title"], namespace=collection["namespace"],
                                     description=collection["description"], private=collection["private"],
                                     exists_ok=True)
        for item in collection["items"]:
            api.add_collection_item(made.slug, item_id=item["item_id"], item_type=item["item_type"],
                                    note=item["note"], exists_ok=True)
    except Exception as exc:
        raise UserError(f"the repositories are uploaded, but the collection could not be made "
                        f"({type(exc).__name__}); rerun the same push to retry") from None
    return made.url


def write_report_repo(report: Path, folder: Path, spec: Any) -> Path:
    """The report as a dataset repository: its README with a dataset card header, whose `configs` make each CSV
    table load with `datasets.load_dataset(repo, "<table>")`; the figures beside it. Only the files the report
    wrote (its own manifest) go in: never a link, a user's file beside them, or one changed since."""
    files, left_out = report_files(report)
    if left_out:
        log(f"left out of the report's release (not written by the report, a link, or changed since): "
            f"{', '.join(left_out)}")
    with staging(folder) as tmp:
        tables = [p for p in files if p.suffix == ".csv"]
        for item in files:
            shutil.copyfile(item, tmp / item.name)
        header = {"pretty_name": f"bert-tickets study {spec.name}", "tags": ["lottery-ticket", "bert-tickets"],
                  "configs": [{"config_name": t.stem, "data_files": t.name} for t in tables]}
        if not (tmp / "README.md").is_file():
            raise UserError(f"{report / 'README.md'} is not the report's own (changed after it was written): rerun "
                            "the push, which writes the report again")
        body = (tmp / "README.md").read_text()
        write_text(tmp / "README.md", "---\n" + _yaml(header) + "---\n\n" + body)
        replace_owned(tmp, folder, "an earlier export of a study's report")
    return folder


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, allow_unicode=True)
