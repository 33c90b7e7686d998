"""A given ticket's mask (`pruning.ticket`) on θ0; `reinit` and `shuffle` change the weights it applies to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bert_tickets.errors import UserError
from bert_tickets.methods.base import LevelContext, Method

if TYPE_CHECKING:
    from bert_tickets.engine.masks import Mask


class GivenTicket(Method):
    """A given ticket's mask on θ0, fine-tuned on this run's task (`bert-tickets evaluate`, transfer cells)."""

    name = "ticket"
    label = "a given ticket's mask (θ0)"
    help = "a given ticket's mask (--ticket), fine-tuned on this task"
    needs_ticket = True
    baseline = False

    def level_mask(self, run: LevelContext, k: int) -> Mask:
        from bert_tickets.ticket import Ticket

        return Ticket.load(given(run)).mask

    def check(self, run: LevelContext) -> None:
        """The ticket's mask fits this model and covers its prunable matrices, at the run's sparsity."""
        from bert_tickets.engine.masks import OPTIONAL_KEYS, fit_mask, sparsity_report
        from bert_tickets.ticket import Ticket

        k = len(run.sparsities) - 1
        mask = Ticket.load(given(run)).mask
        fit_mask(run.build_model(run.seed), mask)  # a clear error now if it was found on another architecture
        prunable = run.theta0_prunable()
        if missing := [n for n in prunable if n not in mask and not OPTIONAL_KEYS.search(n)]:
            covered = sum(name in mask for name in prunable)
            raise UserError(f"the ticket's mask covers {covered} of the {len(prunable)} "
                            f"prunable matrices (first missing: {missing[0]}): its sparsity would not be this "
                            "network's; check pruning.prunable")
        if extra := [n for n in mask if n not in prunable and not OPTIONAL_KEYS.search(n)]:
            raise UserError(f"the ticket's mask holds {len(extra)} entries outside this run's prunable weights (first: "
                            f"{extra[0]}): a mask may prune only pruning.prunable's matrices")
        found = sparsity_report(mask)["sparsity"]
        if abs(found - run.sparsities[k]) > 1e-3:
            raise UserError(f"the ticket's sparsity is {found:.4f}, not {run.sparsities[k]}")


def given(run: LevelContext) -> str:
    """The ticket folder the run applies (`methods.check_config` refused a run of this method without one)."""
    if run.pruning.ticket is None:
        raise UserError("a given ticket's mask needs a ticket folder (--ticket)")
    return run.pruning.ticket
