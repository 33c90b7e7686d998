from __future__ import annotations

from bert_tickets.methods.base import LevelContext, State
from bert_tickets.methods.ticket import GivenTicket


class ReinitialisedTicket(GivenTicket):
    """The ticket's mask on randomly re-initialised encoder weights (the paper's θ0')."""

    name = "reinit"
    label = "IMP mask, random re-init"
    help = "the ticket's mask (--ticket) on randomly re-initialised weights"
    weights = "random re-initialisation"
    exportable = False
    baseline = True

    def rewound_encoder(self, run: LevelContext, state: State | None, seed: int) -> tuple[State | None, bool]:
        return state, True
