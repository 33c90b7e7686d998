"""Pruning methods by name: one class per method (one file each), and one line here per method.

The order is the order of `--method`'s help and of a study's default baselines.
"""

from __future__ import annotations

from bert_tickets.errors import UserError
from bert_tickets.methods.base import Method
from bert_tickets.methods.imp import IterativeMagnitudePruning
from bert_tickets.methods.magnitude import MagnitudePruning
from bert_tickets.methods.oneshot import OneShotPruning
from bert_tickets.methods.random_pruning import RandomPruning
from bert_tickets.methods.reinit import ReinitialisedTicket
from bert_tickets.methods.shuffle import ShuffledTicket
from bert_tickets.methods.standard import StandardPruning
from bert_tickets.methods.ticket import GivenTicket

METHODS: dict[str, Method] = {method.name: method for method in [
    IterativeMagnitudePruning(),
    GivenTicket(),
    RandomPruning(),
    ReinitialisedTicket(),
    ShuffledTicket(),
    MagnitudePruning(),
    OneShotPruning(),
    StandardPruning(),
]}
IMP = IterativeMagnitudePruning.name  # the method whose tickets studies and transfer find


def baselines() -> list[str]:
    """The methods that may run beside an IMP ticket at its sparsity, in registry order."""
    return [name for name, method in METHODS.items() if method.baseline]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]


def methods_help() -> str:
    return "; ".join(f"{name}: {method.help}" for name, method in METHODS.items())


__all__ = ["IMP", "METHODS", "Method", "baselines", "get_method", "methods_help"]
