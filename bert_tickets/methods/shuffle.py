from __future__ import annotations

from bert_tickets.methods.base import LevelContext, State
from bert_tickets.methods.ticket import GivenTicket


class ShuffledTicket(GivenTicket):
    """The ticket's mask on θ0 with each prunable matrix's weights shuffled within the matrix (the paper's θ0'')."""

    name = "shuffle"
    label = "IMP mask, shuffled θ0"
    help = "the ticket's mask (--ticket) on θ0 shuffled within each matrix"
    weights = "θ0 with each prunable matrix's weights shuffled within the matrix"
    exportable = False
    baseline = True

    def shuffle(self, weights: State, names: list[str], seed: int) -> State:
        from bert_tickets.engine.modeling import shuffled_weights

        return shuffled_weights(weights, names, seed)

    def rewound_encoder(self, run: LevelContext, state: State | None, seed: int) -> tuple[State | None, bool]:
        from bert_tickets.engine.masks import select_prunable

        names = list(select_prunable(run.theta0(), run.pruning.prunable))
        return self.shuffle(state if state is not None else run.theta0(), names, seed), False
