"""What the engine knows about a pruning method: one small class per method, registered by name.

A method declares what kind of run it is (does it train a dense level, is it iterative, does it rewind, does it
need a ticket, may its tickets be exported or run with LoRA) and makes the mask of a level; the engine
(`bert_tickets.engine.run.ImpRun`) asks it and never compares method names. A method sees a run only through
`LevelContext` (the engine satisfies it): it imports nothing from the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    import torch

    from bert_tickets.config import PruningConfig
    from bert_tickets.engine.masks import Mask

THETA0 = "θ0 (pre-trained)"
State = dict[str, "torch.Tensor"]


class LevelContext(Protocol):
    """What a method may read of a run while it makes a level's mask or a fine-tuning's start."""

    sparsities: list[float]  # level k's target sparsity; level 0 is dense
    seed: int  # the seed of the run's levels

    @property
    def pruning(self) -> PruningConfig: ...

    def theta0(self) -> State:
        """The pre-trained encoder, every parameter."""
        ...

    def theta0_prunable(self) -> State: ...

    def trained_prunable(self, k: int) -> State:
        """Level k's trained prunable weights (for methods that train a dense level)."""
        ...

    def level_mask(self, k: int) -> Mask: ...

    def build_model(self, seed: int) -> torch.nn.Module:
        """A task model on θ0 with a head from `seed` (to check a mask fits the architecture)."""
        ...

    def calibration_batches(self) -> list[State]:
        """Encoder inputs for the methods that measure θ0's layers (`pruning.calibration`)."""
        ...

    def method_file(self, name: str) -> Path:
        """A file of this run's folder for what a method keeps beside its mask (SparseGPT's weights)."""
        ...


class Method:
    """One pruning method: what the engine must know about it (the class attributes) and how it makes a mask."""

    name: ClassVar[str]
    label: ClassVar[str]  # its row in tables and figures
    help: ClassVar[str]  # one line for `--method`
    weights: ClassVar[str] = THETA0  # what the ticket's mask is fine-tuned from (written to ticket.json)
    trains_dense_level: ClassVar[bool] = False  # the mask is found by training: level 0 is a dense fine-tuning
    iterative: ClassVar[bool] = False  # levels along the sparsity schedule; else dense, then the target at once
    # each level starts again from θ0 (or the rewind point); False: a level trains on from the last level's trained
    # network, and another seed of the ticket is another whole chain of levels
    rewinds: ClassVar[bool] = True
    needs_ticket: ClassVar[bool] = False  # applies a given ticket's mask (`pruning.ticket`)
    exportable: ClassVar[bool] = True  # its weights are θ0 (or a rewind point), so `push` may release its tickets
    allows_lora: ClassVar[bool] = True  # LoRA freezes the backbone: no use for finding a mask by training
    baseline: ClassVar[bool] = True  # may run beside an IMP ticket at its sparsity (--baselines, studies)
    prunes_by_magnitude: ClassVar[bool] = False  # a global magnitude threshold empties tiny-weight matrices first
    extendable: ClassVar[bool] = False  # keeps the last level's trained weights, so a sparser target goes on from it

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        """The mask of level k >= 1 (called once: the engine saves it)."""
        raise NotImplementedError

    def check(self, run: LevelContext) -> None:
        """Raise a UserError for inputs this method cannot use, before the run writes anything."""

    def rewound_encoder(self, run: LevelContext, state: State | None, seed: int) -> tuple[State | None, bool]:
        """The encoder a masked fine-tuning starts from: (`state`, or None for θ0; re-initialise it at random?)."""
        return state, False

    def __repr__(self) -> str:
        return f"<method {self.name}>"


class PrunedAfterTraining(Method):
    """Methods that find the mask by training: mask k is level k-1's mask with the smallest of its trained
    weights pruned (IMP, one-shot, standard pruning)."""

    trains_dense_level = True
    allows_lora = False
    prunes_by_magnitude = True

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        from bert_tickets.engine.masks import magnitude_mask

        from_theta0 = k == 1 and run.pruning.first_mask_from_theta0
        trained = run.theta0_prunable() if from_theta0 else run.trained_prunable(k - 1)
        return magnitude_mask(trained, run.level_mask(k - 1), run.sparsities[k], run.pruning.scope)
