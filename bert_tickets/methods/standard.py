from bert_tickets.methods.base import PrunedAfterTraining


class StandardPruning(PrunedAfterTraining):
    """Standard pruning: IMP's levels without rewinding, each level training on from the last."""

    name = "standard"
    label = "standard pruning (no rewind)"
    help = "IMP's levels without rewinding (each level trains on from the last)"
    weights = "no rewinding: each level trained on from the last (scores are of the pruned, trained network)"
    iterative = True
    rewinds = False
    exportable = False
