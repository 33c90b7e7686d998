"""The rows of a transfer matrix: where a cell's mask comes from, as types.

A row is a task's IMP ticket (`TaskTicket`: found first, then its mask fine-tuned on each target) or a mask that
needs no source task (`MaskOnly`: a method that makes its mask from θ0 alone, e.g. random pruning or θ0's own
magnitudes, the one-shot θ0 control). A new kind of row is one `Source` class and one line in `SOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bert_tickets.methods import get_method
from bert_tickets.methods.magnitude import MagnitudePruning
from bert_tickets.methods.random_pruning import RandomPruning
from bert_tickets.methods.sparsegpt import SparseGPTMask, SparseGPTPruning
from bert_tickets.methods.ticket import GivenTicket
from bert_tickets.methods.wanda import WandaPruning
from bert_tickets.tasks import get_task


class Source:
    """A transfer matrix's row: its name (in tables, CSVs and the matrix's hash), its label (in figures), and the
    settings that put its mask on a target's run."""

    needs_ticket: ClassVar[bool] = False  # a task's ticket is found first (`ticket_task`), then transferred

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def label(self) -> str:
        raise NotImplementedError

    @property
    def ticket_task(self) -> str | None:
        """The task whose ticket this row transfers, or None for a mask that needs no source task."""
        return None

    def settings(self, ticket: Path | None) -> dict[str, Any]:
        """The settings of a cell's engine run that give it this row's mask (`ticket`: the source's ticket)."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TaskTicket(Source):
    """A task's IMP ticket, applied to θ0 and fine-tuned on the target."""

    task: str
    needs_ticket: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return self.task

    @property
    def label(self) -> str:
        return f"{self.task} IMP ticket"

    @property
    def ticket_task(self) -> str | None:
        return self.task

    def settings(self, ticket: Path | None) -> dict[str, Any]:
        assert ticket is not None, "a task's ticket row needs the ticket's folder"
        return {"pruning.method": GivenTicket.name, "pruning.ticket": str(ticket.resolve())}


@dataclass(frozen=True)
class MaskOnly(Source):
    """A method's mask made from θ0 alone, on the target's own run (no source task)."""

    method: str

    @property
    def name(self) -> str:
        return self.method

    @property
    def label(self) -> str:
        return get_method(self.method).label

    def settings(self, ticket: Path | None) -> dict[str, Any]:
        return {"pruning.method": self.method}


# the rows that are no task, by name; RANDOM is added to every matrix as its control
SOURCES: dict[str, Source] = {
    RandomPruning.name: MaskOnly(RandomPruning.name),
    MagnitudePruning.name: MaskOnly(MagnitudePruning.name),  # θ0 pruned once by magnitude: the one-shot θ0 row
    # one-shot masks that see the target's calibration inputs (pruning.calibration), made on the target's own run
    WandaPruning.name: MaskOnly(WandaPruning.name),
    SparseGPTMask.name: MaskOnly(SparseGPTMask.name),
    SparseGPTPruning.name: MaskOnly(SparseGPTPruning.name),
}
RANDOM = SOURCES[RandomPruning.name]
CONTROLS = (RANDOM,)  # rows every matrix gets, after the chosen ones


def parse_source(name: str | Source) -> Source:
    """A row by name: a registered mask-only row, else a task (its IMP ticket); one clear error otherwise."""
    if isinstance(name, Source):
        return name
    return SOURCES.get(name) or TaskTicket(get_task(name).name)


def source_names() -> list[str]:
    return list(SOURCES)
