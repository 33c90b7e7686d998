"""bert-tickets: lottery tickets in pre-trained BERT networks (Chen et al., NeurIPS 2020).

One function per command (`bert_tickets.api`), with the same settings and run folders:

    import bert_tickets as bt
    ticket = bt.find_ticket("sst2", 0.5, config="minilm", data_dir="../shared/data/glue", max_steps=200)
    bt.evaluate_ticket(ticket, "rte", data_dir="../shared/data/glue", max_steps=200)
    bt.transfer(["sst2", "rte"], ["sst2", "rte"], 0.5, config="minilm", data_dir="../shared/data/glue")
    bt.study("minilm-cpu")
    bt.push(ticket, "me/minilm-sst2-50", dry_run="release/")
    bt.Ticket.load(ticket.path).apply(model)   # zero the pruned weights of any task model on the same encoder
    Trainer(..., callbacks=[bt.KeepMask(bt.Ticket.from_pretrained("owner/name"))])   # keep them zero in yours
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:  # one version, pyproject's: nothing in the package imports it from here (imp would close an import cycle)
    __version__ = version("bert-tickets")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
API = ("find_ticket", "evaluate_ticket", "transfer", "study", "push", "find", "plan_study", "report")


def __getattr__(name: str) -> Any:
    """Imported on first use: `import bert_tickets` stays light (no torch) for the command-line help."""
    if name in API:
        from bert_tickets import api

        return getattr(api, name)
    if name == "Ticket":
        from bert_tickets.ticket import Ticket

        return Ticket
    if name == "KeepMask":
        from bert_tickets.engine.keep_mask import KeepMask

        return KeepMask
    raise AttributeError(name)


__all__ = ["KeepMask", "Ticket", "__version__", *API]
