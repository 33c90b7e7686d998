from bert_tickets.methods.base import PrunedAfterTraining


class IterativeMagnitudePruning(PrunedAfterTraining):
    """IMP: train, prune a fraction of the trained weights by magnitude, rewind to θ0, level after level."""

    name = "imp"
    label = "IMP ticket (θ0)"
    help = "iterative magnitude pruning with rewinding to θ0 (the paper's tickets)"
    iterative = True
    baseline = False
    extendable = True
