from bert_tickets.methods.base import PrunedAfterTraining


class OneShotPruning(PrunedAfterTraining):
    """One dense fine-tuning, pruned to the target sparsity at once by magnitude, then rewound to θ0."""

    name = "oneshot"
    label = "one-shot pruning after training (θ0)"
    help = "one dense fine-tuning, pruned to the target at once, rewound to θ0"
