"""Releasing a ticket on the Hugging Face Hub: a folder that plain transformers loads, verified, then uploaded.

The folder holds the masked model (m ⊙ θ0, `save_pretrained`, safetensors, exact zeros where the mask is
off), its tokenizer, `mask.safetensors`, `ticket.json` and a model card with a model-index of the ticket's
and the dense model's dev scores. Nothing is uploaded before the zeros and the sparsity are checked.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open
from safetensors.torch import load_file

from bert_tickets import paths
from bert_tickets.errors import UserError
from bert_tickets.masks import sparsity_report
from bert_tickets.methods import get_method
from bert_tickets.metrics import display_value, format_mean_std
from bert_tickets.modeling import MINILM_ALIASES, load_pretrained, resolve_model_path
from bert_tickets.release_folder import UPLOAD_IGNORE, check_replaceable, replace_owned, staging
from bert_tickets.runs import log, usable_folder
from bert_tickets.stats import matching_mark
from bert_tickets.tasks import get_task
from bert_tickets.ticket import Ticket

HUB_BASE = {name: "sentence-transformers/all-MiniLM-L6-v2" for name in MINILM_ALIASES}


def export_ticket(ticket_dir: str | Path, out: str | Path, repo_id: str) -> Path:
    """Write the Hub-ready folder `out`, verified before anything in `out` changes. Into an earlier export, only the
    files that export wrote are replaced (`bert_tickets.release_folder`): nothing else in `out` is touched."""
    check_repo_id(repo_id)
    ticket = Ticket.load(ticket_dir)
    if not get_method(ticket.info["method"]).exportable:
        raise UserError(f"exporting a {ticket.info['method']!r} ticket is not supported: its weights are not θ0")
    out = Path(out)
    usable_folder(out.parent)
    check_replaceable(out)
    with staging(out) as tmp:
        _write_export(ticket, tmp, repo_id)
        verify_export(tmp)
        replace_owned(tmp, out)  # checks `out` again: something may have changed meanwhile
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


def _write_export(ticket: Ticket, folder: Path, repo_id: str) -> None:
    revision = ticket.info.get("config", {}).get("model.revision")
    pretrained = load_pretrained(ticket.model_name, get_task(ticket.task), revision=revision)
    here = paths.rewind_point(ticket.path.parents[1])  # the run folder, wherever it has been moved
    rewind = (here if here.exists() else paths.rewind_point(Path(ticket.info["run_dir"]))) \
        if ticket.info.get("rewind_step") else None
    model = pretrained.build(ticket.info["seeds"][0], encoder_state=load_file(str(rewind)) if rewind else None)
    ticket.apply(model)
    model.config.name_or_path = repo_id  # not this machine's path
    base_model, data_source = public_sources(ticket)
    model.config.bert_tickets = {  # saved into config.json: where the weights and the mask's data came from
        "base_model": base_model, "data_source": data_source, "sparsity": ticket.sparsity,
        "method": ticket.info["method"]}
    model.save_pretrained(folder)
    pretrained.tokenizer.save_pretrained(folder)
    _drop_local_settings(folder / "tokenizer_config.json")
    shutil.copyfile(paths.mask(ticket.path), paths.mask(folder))
    shutil.copyfile(paths.ticket_info(ticket.path), paths.ticket_info(folder))
    model_card(ticket, repo_id, model.base_model_prefix).save(folder / "README.md")


def check_repo_id(repo_id: str, flag: str = "--repo-id") -> None:
    """OWNER/NAME, as huggingface_hub's own validator accepts it (no '--' or '..', no '.git' ending, ...)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise UserError(f"{flag} must look like OWNER/NAME, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UserError(f"{flag} {repo_id!r} is not a valid Hub repository id: {_first_line(exc)}") from None


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
    """The card: metadata the Hub reads (base model and its license, language, pipeline, the dataset the ticket
    was found on, a model-index of the ticket's own dev scores in their units) and a body with dense beside it."""
    info, task = ticket.info, get_task(ticket.task)
    model, source = public_sources(ticket)
    dataset_id, dataset_name = _card_dataset(task, source)
    n_seeds = len(info["seeds"])
    results = []
    for metric, summary in info["metrics"]["ticket"].items():
        split, metric_id = task.hub_metric(metric)
        results.append(EvalResult(
            task_type=task.task_type, dataset_type=dataset_id or "text", dataset_name=dataset_name,
            dataset_config=task.hub_dataset_config if dataset_id else None, dataset_split=split,
            metric_type=metric_id, metric_value=round(display_value(metric, summary["mean"]), 4),
            metric_name=f"{metric} (mean of {n_seeds} seed{'s' * (n_seeds > 1)})"))
    base = HUB_BASE.get(ticket.model_name.lower(), ticket.model_name)
    base_id = None if Path(base).exists() else base  # a local folder is no Hub id
    data = ModelCardData(
        base_model=base_id, datasets=[dataset_id] if dataset_id else None, language=[task.language],
        license=base_model_license(ticket.model_name), library_name="transformers",
        pipeline_tag=task.task_type, model_name=repo_id.split("/")[-1], eval_results=results,
        tags=["lottery-ticket", "pruning", "sparse", "bert-tickets", f"sparsity-{round(100 * ticket.sparsity)}"],
        bert_tickets={"task": ticket.task, "method": info["method"], "sparsity": ticket.sparsity,
                      "matching": info["matching"], "encoder_prefix": encoder_prefix, "seeds": info["seeds"],
                      "model_source": model, "data_source": source})
    rows = "\n".join(f"| {m} | {format_mean_std(m, s)} | {format_mean_std(m, info['metrics']['dense'][m])} |"
                     for m, s in info["metrics"]["ticket"].items())
    body = CARD_TEMPLATE.format(repo_id=repo_id, task=ticket.task, sparsity=100 * ticket.sparsity, rows=rows,
                                method=info["method"], base=base, primary=task.primary_metric,
                                matching=matching_mark(info["matching"]), command=info.get("command", ""),
                                n_seeds=n_seeds, model_class=task.model_class().__name__,
                                project=project_link(), data=_describe_data(source, dataset_name),
                                model_pin=_describe_model(model), method_label=get_method(info["method"]).label)
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)


def ticket_data_source(ticket: Ticket) -> dict[str, Any]:
    """ticket.json's data source; for tickets written before it was recorded, what their settings say."""
    if "data_source" in ticket.info:
        return ticket.info["data_source"]
    config = ticket.info.get("config", {})
    files = [config[k] for k in ("data.data_dir", "data.train_file", "data.validation_file") if config.get(k)]
    if files:
        return {"local_files": files}
    task = get_task(ticket.task)
    return {"hub_dataset": task.hub_dataset, "config": task.hub_dataset_config, "revision": None}


def public_sources(ticket: Ticket) -> tuple[dict[str, Any], dict[str, Any]]:
    """The base model's and the data's source as a release states them (no paths of this machine)."""
    return (_public_model(ticket.info.get("model_source") or {"model": ticket.model_name}),
            _public(ticket_data_source(ticket)))


def _public(source: dict[str, Any]) -> dict[str, Any]:
    """Local files by their folder and name only: a release does not publish this machine's paths."""
    if "local_files" not in source:
        return source
    return source | {"local_files": [f"{Path(f).parent.name}/{Path(f).name}" for f in source["local_files"]]}


def _public_model(source: dict[str, Any]) -> dict[str, Any]:
    """A local checkpoint by its folder's name only (a Hub id, or the MiniLM package, as it is)."""
    if "local_folder" not in source or not Path(source["local_folder"]).is_absolute():
        return source
    name = Path(source["local_folder"]).name
    return source | {"model": name, "local_folder": f"a local checkpoint folder ({name})"}


def _card_dataset(task: Any, source: dict[str, Any]) -> tuple[str | None, str]:
    """(the Hub dataset id to list, or None; the dataset's name in the model-index)."""
    config = f" {task.hub_dataset_config}" if task.hub_dataset_config else ""
    if "hub_dataset" in source:
        return source["hub_dataset"], f"{source['hub_dataset']}{config}"
    if source.get("official_format_of"):  # the official files of the Hub dataset, read from a local copy
        return source["official_format_of"], f"{source['official_format_of']}{config} (official files, read locally)"
    names = ", ".join(Path(f).name for f in source["local_files"])
    return None, f"local text files ({names})"


def _describe_data(source: dict[str, Any], name: str) -> str:
    if "hub_dataset" in source:
        pinned = f" at revision `{source['revision']}`" if source.get("revision") else ""
        commit = f" (commit `{source['commit']}`)" if source.get("commit") else ""
        return f"the Hub dataset `{name}`{pinned}{commit}"
    return f"{name}: " + ", ".join(f"`{f}`" for f in source["local_files"])


def _describe_model(source: dict[str, Any]) -> str:
    if "local_folder" in source:
        return f"`{source['model']}` ({source['local_folder']})"
    pinned = f" at revision `{source['revision']}`" if source.get("revision") else ""
    commit = f", commit `{source['commit']}`" if source.get("commit") else ""
    return f"`{source['model']}`{pinned}{commit}"


def base_model_license(name: str) -> str | None:
    """The license in the base model's own card (a local folder's README.md, or the Hub's); None if unknown."""
    path = Path(resolve_model_path(name))
    try:
        card = ModelCard.load(path / "README.md") if path.exists() else ModelCard.load(name)
    except Exception:  # no card, offline: the card says nothing rather than guess
        return None
    license_ = card.data.to_dict().get("license")
    return license_ if isinstance(license_, str) else None


def project_link() -> str:
    """The project's home, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("bert-tickets").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    links = dict(url.split(", ", 1) for url in urls if ", " in url)
    url = links.get("Repository") or links.get("Homepage")
    return f"[bert-tickets]({url})" if url else "bert-tickets"


def _drop_local_settings(path: Path) -> None:
    """transformers records how this machine loaded the tokenizer (offline or not); a release should not."""
    if path.exists():
        config = json.loads(path.read_text())
        if config.pop("local_files_only", None) is not None:
            path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class PushOptions:
    private: bool = False  # a new repository is private; an existing public one is refused
    revision: str | None = None  # the branch to upload to (created if missing); None: main
    create_pr: bool = False  # open a pull request against main instead of committing

    def check(self) -> None:
        if self.create_pr and self.revision:  # huggingface_hub opens pull requests against the default branch
            raise UserError("--create-pr opens a pull request against main; it cannot go to --revision "
                            f"{self.revision!r} (push to the branch, or leave out --revision)")


def push_to_hub(folder: Path, repo_id: str, options: PushOptions = PushOptions(), repo_type: str = "model",
                message: str = "Upload lottery ticket (bert-tickets)") -> str:
    """Upload `folder` into `repo_id` (created if missing) and return the repository's (or the PR's) URL. The token
    comes from the usual places and is never printed."""
    from huggingface_hub import HfApi

    options.check()
    api = HfApi()
    try:
        url = _create_or_check(api, repo_id, repo_type, options.private)
        if options.revision and not options.create_pr:
            api.create_branch(repo_id, branch=options.revision, repo_type=repo_type, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                   ignore_patterns=UPLOAD_IGNORE,
                                   revision=options.revision, create_pr=options.create_pr, commit_message=message)
    except UserError:
        raise
    except Exception as exc:  # offline, auth, HTTP: one line, without the token
        raise UserError(f"could not upload to the Hub ({type(exc).__name__}: {_first_line(exc)}); "
                        "--dry-run DIR writes the folder without network") from None
    return str(commit.pr_url) if options.create_pr and commit.pr_url else url


def _create_or_check(api: Any, repo_id: str, repo_type: str, private: bool) -> str:
    """A new repository is created with the visibility asked for; an existing one must not be public when
    --private is asked for (uploading a private release into a public repository would publish it)."""
    from huggingface_hub.utils import RepositoryNotFoundError

    try:
        existing = api.repo_info(repo_id, repo_type=repo_type)
    except RepositoryNotFoundError:
        return str(api.create_repo(repo_id, repo_type=repo_type, private=private))
    if private and not existing.private:
        raise UserError(f"{repo_id} already exists and is public: --private would upload into it publicly (make it "
                        "private on the Hub first, or leave out --private)")
    if existing.private and not private:
        log(f"{repo_id} exists and is private: the upload stays private")
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{api.endpoint}/{prefix}{repo_id}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return re.sub(r"hf_[A-Za-z0-9]+", "hf_***", text)[:200]


CARD_TEMPLATE = """
# {repo_id}: a {sparsity:.0f}%-sparse lottery ticket of {base} for {task}

A subnetwork of the pre-trained **{base}**, found by `{method}` ({method_label}) with {project} (after Chen et al., *The
Lottery Ticket Hypothesis for Pre-trained BERT Networks*, NeurIPS 2020) on {data}. The weights are the
pre-trained ones with {sparsity:.1f}% of the encoder's attention and feed-forward matrices set to exactly zero;
`mask.safetensors` holds the mask (True = kept), keyed by the encoder's parameter names, and `ticket.json` how
it was found. The task head is freshly initialised: fine-tune it.

## Dev scores after fine-tuning (mean ± std over {n_seeds} seed(s))

The model-index above lists the ticket's scores; here they stand beside the dense model's, fine-tuned with the
same recipe and seeds. Accuracy, F1 and exact match are in %; correlations, loss and perplexity as they are.

| metric | ticket | dense |
|---|---|---|
{rows}

Matching the dense model ({primary} within one standard deviation of dense, over the same seeds): **{matching}**.

## Reproduce

Base model: {model_pin}.

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
