"""Pruning methods by name: one class per method (one file each), and one line here per method.

The order is the order of `--method`'s help and of a study's default baselines.
A method module imports the engine's torch code (masks, pruners, modeling) inside its methods, not at the top:
the command line reads this registry for `--help` and its flag errors, which answer without loading torch
(tests/test_light_cli.py).
"""

from __future__ import annotations

from bert_tickets.config import Config
from bert_tickets.errors import UserError
from bert_tickets.methods.base import Method
from bert_tickets.methods.imp import IterativeMagnitudePruning
from bert_tickets.methods.magnitude import MagnitudePruning
from bert_tickets.methods.oneshot import OneShotPruning
from bert_tickets.methods.random_pruning import RandomPruning
from bert_tickets.methods.reinit import ReinitialisedTicket
from bert_tickets.methods.shuffle import ShuffledTicket
from bert_tickets.methods.shuffle_layers import LayerShuffledTicket
from bert_tickets.methods.sparsegpt import SparseGPTMask, SparseGPTPruning
from bert_tickets.methods.standard import StandardPruning
from bert_tickets.methods.ticket import GivenTicket
from bert_tickets.methods.wanda import WandaPruning

METHODS: dict[str, Method] = {method.name: method for method in [
    IterativeMagnitudePruning(),
    GivenTicket(),
    RandomPruning(),
    ReinitialisedTicket(),
    ShuffledTicket(),
    MagnitudePruning(),
    OneShotPruning(),
    StandardPruning(),
    LayerShuffledTicket(),  # later ones last: every earlier arm keeps its colour in the figures
    WandaPruning(),
    SparseGPTMask(),
    SparseGPTPruning(),
]}
IMP = IterativeMagnitudePruning.name  # the method whose tickets studies and transfer find


def baselines() -> list[str]:
    """The methods that may run beside an IMP ticket at its sparsity, in registry order."""
    return [name for name, method in METHODS.items() if method.baseline]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r} (known: {', '.join(METHODS)})")
    return METHODS[name]


def check_config(config: Config) -> Config:
    """The method's own rules on the settings (the config knows no method): one clear error each; the config."""
    p, t = config.pruning, config.training
    method = get_method(p.method)
    if method.needs_ticket != (p.ticket is not None):
        with_ticket = " and ".join(name for name, m in METHODS.items() if m.needs_ticket)
        raise UserError(f"methods {with_ticket} need a ticket folder (--ticket), the others none")
    if p.rewind_step and not (method.trains_dense_level and method.rewinds):
        raise UserError(f"rewinding to a training step needs a trained level 0: not method {p.method!r}")
    if t.finetune == "lora" and not method.allows_lora:
        raise UserError(f"LoRA leaves the backbone frozen, so it cannot find a mask by training ({p.method}); "
                        "use it to evaluate fixed masks (evaluate, transfer, "
                        f"{', '.join(name for name, m in METHODS.items() if m.allows_lora)})")
    return config


def validated(config: Config) -> Config:
    """Every check a run's settings get before anything loads: the config's own, then its method's."""
    return check_config(config.validate())


def methods_help() -> str:
    return "; ".join(f"{name}: {method.help}" for name, method in METHODS.items())


__all__ = ["IMP", "METHODS", "Method", "baselines", "check_config", "get_method", "methods_help", "validated"]
