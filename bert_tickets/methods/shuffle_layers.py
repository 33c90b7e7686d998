from __future__ import annotations

from bert_tickets.methods.base import State
from bert_tickets.methods.shuffle import ShuffledTicket


class LayerShuffledTicket(ShuffledTicket):
    """The ticket's mask on θ0 with whole layers' prunable matrices permuted: layer i gets layer π(i)'s query, key,
    value, attention output, intermediate and output matrices, π one random permutation of the layers, the pooler
    left in place. The authors' shuffle control (pertub_weight.py:46-56, `shuffle_weight`), beside `shuffle`, which
    permutes the entries within each matrix."""

    name = "shuffle_layers"
    label = "IMP mask, θ0 layers permuted"
    help = "the ticket's mask (--ticket) on θ0 with whole layers permuted (the authors' shuffle)"
    weights = "θ0 with the encoder's layers' prunable matrices permuted across layers"

    def shuffle(self, weights: State, names: list[str], seed: int) -> State:
        from bert_tickets.engine.modeling import layer_shuffled_weights

        return layer_shuffled_weights(weights, names, seed)
