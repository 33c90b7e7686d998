"""Sections both release cards share: the recipe as a table, the sparsity two ways, and how to cite."""

from __future__ import annotations

from bert_tickets.config import Config, flat_settings
from bert_tickets.provenance import package_version
from bert_tickets.results import TicketInfo

# (setting, how the card names it), in the order a reader checks a recipe; a setting left unset is left out
RECIPE_ROWS = (
    ("training.learning_rate", "peak learning rate (AdamW, linear decay)"),
    ("training.batch_size", "batch size"),
    ("training.max_steps", "optimizer steps per fine-tuning"),
    ("training.epochs", "epochs per fine-tuning"),
    ("training.final_max_steps", "optimizer steps of the final fine-tunings"),
    ("training.warmup_steps", "warm-up steps"),
    ("training.warmup_ratio", "warm-up (fraction of the steps)"),
    ("training.weight_decay", "weight decay"),
    ("training.max_grad_norm", "gradient clipping (global norm)"),
    ("training.finetune", "fine-tuning"),
    ("data.max_length", "tokens per example"),
    ("data.max_train_samples", "training examples (a seeded subset)"),
    ("pruning.method", "how the mask was found"),
    ("pruning.rate", "pruned per IMP level"),
    ("pruning.schedule", "IMP schedule"),
    ("pruning.scope", "magnitude threshold"),
    ("pruning.rewind_step", "rewound to the weights after step (0: θ0)"),
)


def recipe_table(info: TicketInfo) -> str:
    """The recipe a ticket was found and evaluated with, as a Markdown table: the code's defaults under the
    ticket's own settings (ticket.json keeps only those that differ), its precision and seeds."""
    settings = flat_settings(Config()) | info.get("config", {})
    unused = {"training.epochs" if settings.get("training.max_steps") is not None else "training.max_steps",
              "training.warmup_ratio" if settings.get("training.warmup_steps") else "training.warmup_steps"}
    rows = [(label, settings.get(key)) for key, label in RECIPE_ROWS if key not in unused]
    rows += [("precision", info.get("precision", settings.get("training.mixed_precision"))),
             ("seeds (evaluation)", ", ".join(map(str, info.get("seeds", []))))]
    lines = [f"| {label} | {value} |" for label, value in rows if value is not None and value != ""]
    return "| setting | value |\n|---|---|\n" + "\n".join(lines)


def sparsity_line(mask_sizes: dict[str, int], sparsity: float, model_weights: int | None) -> str:
    """The sparsity over the prunable matrices (the paper's) and over every weight of the released model."""
    pruned = mask_sizes["prunable_weights"] - mask_sizes["remaining_weights"]
    line = (f"**Sparsity**: {100 * sparsity:.1f}% of the prunable attention and feed-forward matrices ({pruned:,} of "
            f"{mask_sizes['prunable_weights']:,} weights)")
    if model_weights:
        line += (f"; {100 * pruned / model_weights:.1f}% of all {model_weights:,} weights of this model (every weight "
                 "outside the mask is dense: embeddings, LayerNorms, biases, the head)")
    return line + "."


def citation(project_url: str | None) -> str:
    """BibTeX for the method (the paper) and for the code that found this ticket (this toolkit, at its version)."""
    return f"""```bibtex
@inproceedings{{chen2020lottery,
  title     = {{The Lottery Ticket Hypothesis for Pre-trained {{BERT}} Networks}},
  author    = {{Chen, Tianlong and Frankle, Jonathan and Chang, Shiyu and Liu, Sijia and Zhang, Yang and
               Wang, Zhangyang and Carbin, Michael}},
  booktitle = {{Advances in Neural Information Processing Systems}},
  volume    = {{33}},
  pages     = {{15834--15846}},
  year      = {{2020}}
}}

@software{{bert_tickets,
  title   = {{bert-tickets: lottery tickets in pre-trained {{BERT}} networks}},
  version = {{{package_version()}}},
  url     = {{{project_url or "https://github.com/bert-tickets/bert-tickets"}}}
}}
```"""
