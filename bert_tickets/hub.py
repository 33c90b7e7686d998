"""Releasing a ticket on the Hugging Face Hub: a folder that plain transformers loads, verified, then uploaded.

The folder holds the masked model (m ⊙ θ0, `save_pretrained`, safetensors, exact zeros where the mask is
off), its tokenizer, `mask.safetensors`, `ticket.json` and a model card with a model-index of the ticket's
and the dense model's dev scores. Nothing is uploaded before the zeros and the sparsity are checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open
from safetensors.torch import load_file

from bert_tickets import paths
from bert_tickets.errors import UserError
from bert_tickets.masks import sparsity_report
from bert_tickets.methods import get_method
from bert_tickets.metrics import percent_mean_std
from bert_tickets.modeling import MINILM_ALIASES, load_pretrained
from bert_tickets.runs import TEMP_SUFFIX, UMASK, file_lock, usable_folder
from bert_tickets.tasks import get_task
from bert_tickets.ticket import Ticket

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_BASE = {name: "sentence-transformers/all-MiniLM-L6-v2" for name in MINILM_ALIASES}


def export_ticket(ticket_dir: str | Path, out: str | Path, repo_id: str) -> Path:
    """Write the Hub-ready folder `out`. An existing `out` is replaced only if it is an earlier export of ours (never
    a folder of anything else), and only once the new export is verified."""
    check_repo_id(repo_id)
    ticket = Ticket.load(ticket_dir)
    if not get_method(ticket.info["method"]).exportable:
        raise UserError(f"exporting a {ticket.info['method']!r} ticket is not supported: its weights are not θ0")
    out = Path(out)
    usable_folder(out.parent)
    _check_replaceable(out)
    with _export_lock(out):
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TEMP_SUFFIX))  # unique
        try:
            os.chmod(tmp, 0o777 & ~UMASK)
            _write_export(ticket, tmp, repo_id)
            verify_export(tmp)
            _check_replaceable(out)  # again: something may have appeared meanwhile
            _swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_export(folder: Path) -> bool:
    """A folder that `export_ticket` wrote: a model card with our section, a ticket.json and a mask."""
    card = folder / "README.md"
    if not (card.is_file() and paths.ticket_info(folder).is_file() and paths.mask(folder).is_file()):
        return False
    try:
        return "bert_tickets" in ModelCard.load(card).data.to_dict()
    except Exception:  # not a model card at all
        return False


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --dry-run folder")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise UserError(f"{out} is not empty and not an earlier export of a ticket: choose another --dry-run folder "
                        "(nothing was changed)")


@contextmanager
def _export_lock(out: Path) -> Iterator[None]:
    """One export into `out` at a time (the lock file is in the system's temp folder: none is left beside `out`)."""
    key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    with file_lock(Path(tempfile.gettempdir()) / f"bert-tickets-export-{key}.lock"):
        yield


def _write_export(ticket: Ticket, folder: Path, repo_id: str) -> None:
    pretrained = load_pretrained(ticket.model_name, get_task(ticket.task))
    here = paths.rewind_point(ticket.path.parents[1])  # the run folder, wherever it has been moved
    rewind = (here if here.exists() else paths.rewind_point(Path(ticket.info["run_dir"]))) \
        if ticket.info.get("rewind_step") else None
    model = pretrained.build(ticket.info["seeds"][0], encoder_state=load_file(str(rewind)) if rewind else None)
    ticket.apply(model)
    model.config.name_or_path = repo_id  # not this machine's path
    model.save_pretrained(folder)
    pretrained.tokenizer.save_pretrained(folder)
    _drop_local_settings(folder / "tokenizer_config.json")
    shutil.copyfile(paths.mask(ticket.path), paths.mask(folder))
    shutil.copyfile(paths.ticket_info(ticket.path), paths.ticket_info(folder))
    model_card(ticket, repo_id, model.base_model_prefix).save(folder / "README.md")


def _swap_in(new: Path, out: Path) -> None:
    """`new` becomes `out`; the earlier `out`, if any, is deleted only once `new` is in place."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.replace(out, old)  # onto the empty placeholder
    os.replace(new, out)
    shutil.rmtree(old)


def check_repo_id(repo_id: str) -> None:
    if not REPO_ID.match(repo_id):
        raise UserError(f"--repo-id must look like OWNER/NAME, got {repo_id!r}")


def verify_export(folder: Path) -> dict[str, Any]:
    """The saved weights are exactly zero where the mask is off, and the card states the mask's sparsity."""
    mask = Ticket.load(folder).mask
    card = ModelCard.load(folder / "README.md")
    prefix = card.data.to_dict().get("bert_tickets", {}).get("encoder_prefix", "")
    pruned_nonzero = natural_zeros = 0
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        names = set(weights.keys())  # noqa: SIM118 (safe_open is not iterable)
        for name, keep in mask.items():
            key = f"{prefix}.{name}" if f"{prefix}.{name}" in names else name
            if key not in names:
                if "pooler" in name:
                    continue  # the pooler rule: a model without a pooler simply has none to prune
                raise UserError(f"export check failed: {key} is not in model.safetensors")
            tensor = weights.get_tensor(key)
            pruned_nonzero += int((tensor[~keep] != 0).sum())
            natural_zeros += int((tensor[keep] == 0).sum())
    if pruned_nonzero:
        raise UserError(f"export check failed: {pruned_nonzero} pruned weights are not zero")
    stated = card.data.to_dict()["bert_tickets"]["sparsity"]
    measured = sparsity_report(mask)["sparsity"]
    if abs(stated - measured) > 1e-6:
        raise UserError(f"export check failed: the card says sparsity {stated}, the mask has {measured}")
    return {"sparsity": measured, "pruned_nonzero": pruned_nonzero, "kept_but_zero": natural_zeros}


def model_card(ticket: Ticket, repo_id: str, encoder_prefix: str) -> ModelCard:
    info, task = ticket.info, get_task(ticket.task)
    dataset, config = task.hub_dataset, task.hub_dataset_config
    results = [EvalResult(task_type=task.task_type, dataset_type=dataset, dataset_name=dataset,
                          dataset_config=config, dataset_split="validation", metric_type=metric,
                          metric_value=round(100 * summary["mean"], 2), metric_name=f"{metric} ({kind})")
               for kind in ("ticket", "dense") for metric, summary in info["metrics"][kind].items()]
    base = HUB_BASE.get(ticket.model_name.lower(), ticket.model_name)
    data = ModelCardData(
        base_model=None if Path(base).exists() else base, datasets=[dataset],  # a local folder is no Hub id
        library_name="transformers", model_name=repo_id.split("/")[-1], eval_results=results,
        tags=["lottery-ticket", "pruning", "sparse", "bert-tickets", f"sparsity-{round(100 * ticket.sparsity)}"],
        bert_tickets={"task": ticket.task, "method": info["method"], "sparsity": ticket.sparsity,
                      "matching": info["matching"], "encoder_prefix": encoder_prefix, "seeds": info["seeds"]})
    rows = "\n".join(f"| {m} | {percent_mean_std(s)} | {percent_mean_std(info['metrics']['dense'][m])} |"
                     for m, s in info["metrics"]["ticket"].items())
    body = CARD_TEMPLATE.format(repo_id=repo_id, task=ticket.task, sparsity=100 * ticket.sparsity, rows=rows,
                                method=info["method"], base=base, primary=task.primary_metric,
                                matching="yes" if info["matching"] else "no", command=info.get("command", ""),
                                n_seeds=len(info["seeds"]), model_class=task.model_class().__name__)
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)


def _drop_local_settings(path: Path) -> None:
    """transformers records how this machine loaded the tokenizer (offline or not); a release should not."""
    if path.exists():
        config = json.loads(path.read_text())
        if config.pop("local_files_only", None) is not None:
            path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def push_to_hub(folder: Path, repo_id: str, private: bool) -> str:
    """create_repo + upload_folder; the token comes from the usual places and is never printed."""
    from huggingface_hub import create_repo, upload_folder

    try:
        url = create_repo(repo_id, private=private, exist_ok=True)
        upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Upload lottery ticket (bert-tickets)")
    except Exception as exc:  # offline, auth, HTTP: one line, without the token
        raise UserError(f"could not upload to the Hub ({type(exc).__name__}: {_first_line(exc)}); "
                        "--dry-run DIR writes the folder without network") from None
    return str(url)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return re.sub(r"hf_[A-Za-z0-9]+", "hf_***", text)[:200]


CARD_TEMPLATE = """
# {repo_id}: a {sparsity:.0f}%-sparse lottery ticket of {base} for {task}

A subnetwork of the pre-trained **{base}**, found by `{method}` with
[bert-tickets](https://github.com/) (after Chen et al., *The Lottery Ticket Hypothesis for Pre-trained BERT
Networks*, NeurIPS 2020). The weights are the pre-trained ones with {sparsity:.1f}% of the encoder's attention
and feed-forward matrices set to exactly zero; `mask.safetensors` holds the mask (True = kept), keyed by the
encoder's parameter names, and `ticket.json` how it was found. The task head is freshly initialised: fine-tune it.

## Dev scores after fine-tuning (mean ± std over {n_seeds} seed(s), in %)

| metric | ticket | dense |
|---|---|---|
{rows}

Matching the dense model ({primary} within one standard deviation): **{matching}**.

## Reproduce

```bash
{command}
```

## Load it, and keep the mask fixed while fine-tuning

```python
import torch
from huggingface_hub import hf_hub_download
from safetensors.torch import load_file
from transformers import {model_class}

model = {model_class}.from_pretrained("{repo_id}")
mask = load_file(hf_hub_download("{repo_id}", "mask.safetensors"))
params = dict(model.base_model.named_parameters())
pairs = [(params[name], keep.to(params[name].dtype)) for name, keep in mask.items() if name in params]
for param, keep in pairs:
    param.register_hook(lambda grad, keep=keep: grad * keep)  # masked gradients: AdamW state stays zero
# ... and after every optimizer.step():
with torch.no_grad():
    for param, keep in pairs:
        param.mul_(keep)
```

Or with bert-tickets: `Ticket.load(folder).apply(model)` and `bert-tickets evaluate --ticket folder --task TASK`.
"""
