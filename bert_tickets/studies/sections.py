"""A study report's parts: one `Section` class each, listed in the report's registry (`report.SECTIONS`), so a
section a user writes is one class and one line; a kind of job (`jobs.Job`) names its own in `report_section`,
and the report shows it after the built-in ones whenever a study has that kind of job.

A section reads the finished runs as typed pairs (`Finished.of(kind)`: each job with its ticket.json) and returns
its Markdown, writing the CSV and figures behind it into the report folder (`Section.file`, so that a release of
the study carries them); "" when the runs hold nothing for it yet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bert_tickets.files import write_text

if TYPE_CHECKING:
    from bert_tickets.results import TicketInfo
    from bert_tickets.studies.jobs import Job
    from bert_tickets.studies.plan import StudyPlan


@dataclass
class Finished:
    """What the runs of a study hold so far: job -> ticket.json, and the jobs still missing."""

    results: dict[Job, TicketInfo]
    missing: list[Job]

    def of(self, kind: type[Job]) -> list[tuple[Job, TicketInfo]]:
        """The finished jobs of one kind, each with its ticket.json, in the plan's order."""
        return [(job, info) for job, info in self.results.items() if isinstance(job, kind)]


class Section:
    """One part of the report."""

    def render(self, plan: StudyPlan, finished: Finished, out: Path) -> str:
        """The section's Markdown ("" when there is nothing to show), its files written under `out`."""
        raise NotImplementedError

    @staticmethod
    def file(path: Path) -> Path:
        """`path`, recorded as one of the files the report being written holds (its manifest lists them)."""
        if (written := WRITTEN.get()) is not None:
            written.append(path.name)
        return path


class TableSection(Section):
    """A section over rows that also go to one CSV file beside it (`csv_file`): none shown when `shown(rows)` is false;
    else the CSV, and the Markdown `text` makes of the rows."""

    csv_file: ClassVar[str]

    def rows(self, plan: StudyPlan, finished: Finished) -> list[dict[str, Any]]:
        raise NotImplementedError

    def shown(self, rows: list[dict[str, Any]]) -> bool:
        return bool(rows)

    def text(self, plan: StudyPlan, finished: Finished, out: Path, rows: list[dict[str, Any]]) -> str:
        raise NotImplementedError

    def render(self, plan: StudyPlan, finished: Finished, out: Path) -> str:
        rows = self.rows(plan, finished)
        if not self.shown(rows):
            return ""
        write_csv(out / self.csv_file, rows)
        return self.text(plan, finished, out, rows)


def write_csv(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rows as a CSV file, recorded as one of the report's files."""
    rows = list(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(Section.file(path), out.getvalue())


# The names of the files the report being written has written (None outside `report.write_report`).
WRITTEN: ContextVar[list[str] | None] = ContextVar("report_files", default=None)
