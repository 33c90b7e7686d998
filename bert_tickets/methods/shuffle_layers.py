from __future__ import annotations

from bert_tickets.masks import select_prunable
from bert_tickets.methods.base import LevelContext, State
from bert_tickets.methods.ticket import GivenTicket
from bert_tickets.modeling import layer_shuffled_weights


class LayerShuffledTicket(GivenTicket):
    """The ticket's mask on θ0 with whole layers' prunable matrices permuted: layer i gets layer π(i)'s query, key,
    value, attention output, intermediate and output matrices, π one random permutation of the layers, the pooler
    left in place. The authors' shuffle control (pertub_weight.py:46-56, `shuffle_weight`), beside our `shuffle`,
    which permutes the entries within each matrix."""

    name = "shuffle_layers"
    label = "IMP mask, θ0 layers permuted"
    help = "the ticket's mask (--ticket) on θ0 with whole layers permuted (the authors' shuffle)"
    weights = "θ0 with the encoder's layers' prunable matrices permuted across layers"
    exportable = False
    baseline = True

    def rewound_encoder(self, run: LevelContext, state: State | None, seed: int) -> tuple[State | None, bool]:
        names = list(select_prunable(run.theta0(), run.pruning.prunable))
        return layer_shuffled_weights(state if state is not None else run.theta0(), names, seed), False
