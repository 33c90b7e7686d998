"""Releasing a ticket on the Hugging Face Hub: a folder that plain transformers loads, verified, then uploaded.

Two releases, each what its card says. The ticket: m ⊙ θ0 as an upstream sparse encoder (the base model class, no
task head, no model-index; what fine-tuning it gave is evidence in the card's body). A fine-tuned task model
(`fine_tuned`): one evaluation seed's trained model, head included, with its own dev scores in the model-index.
Both hold the tokenizer, the mask as a bitmask, a portable `ticket.json` and the card; nothing is uploaded before
the zeros, the sparsity and the absence of this machine's paths are checked.
"""

from __future__ import annotations

import json
import math
import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open
from safetensors.torch import load_file, load_model

from bert_tickets import paths
from bert_tickets.engine.masks import save_mask, sparsity_config, sparsity_report
from bert_tickets.engine.modeling import MINILM_ALIASES, load_pretrained, resolve_model_path
from bert_tickets.errors import UserError
from bert_tickets.files import usable_folder, write_json
from bert_tickets.logs import quiet
from bert_tickets.methods import get_method
from bert_tickets.metrics import display_value, format_mean_std, index_value
from bert_tickets.ranks import log
from bert_tickets.release.cards import citation, recipe_table, sparsity_line
from bert_tickets.release.folder import UPLOAD_IGNORE, check_replaceable, replace_owned, staging
from bert_tickets.release.sentence_modules import base_model_folder, copy_sentence_modules
from bert_tickets.results import ARMS, TicketInfo
from bert_tickets.stats import matching_mark
from bert_tickets.tasks import get_task
from bert_tickets.ticket import Ticket

HUB_BASE = {name: "sentence-transformers/all-MiniLM-L6-v2" for name in MINILM_ALIASES}


def export_ticket(ticket_dir: str | Path, out: str | Path, repo_id: str, fine_tuned: bool = False,
                  seed: int | None = None) -> Path:
    """Write the Hub-ready folder `out`, verified before anything in `out` changes: the ticket (an upstream sparse
    encoder), or with `fine_tuned` one of its evaluation's fine-tuned task models (`seed`, default the best by the
    dev metric). Into an earlier export, only the files that export wrote are replaced
    (`bert_tickets.release.folder`): nothing else in `out` is touched."""
    check_repo_id(repo_id)
    ticket = Ticket.load(ticket_dir)
    if not get_method(ticket.info["method"]).exportable:
        raise UserError(f"exporting a {ticket.info['method']!r} ticket is not supported: its weights are not θ0")
    if seed is not None and not fine_tuned:
        raise UserError("--seed chooses the fine-tuned model of --fine-tuned; a ticket release has no seed")
    chosen = released_seed(ticket, seed) if fine_tuned else None  # a missing model fails before anything is written
    out = Path(out)
    usable_folder(out.parent)
    check_replaceable(out)
    with staging(out) as tmp:
        if chosen is None:
            _write_export(ticket, tmp, repo_id)
        else:
            _write_finetuned(ticket, tmp, repo_id, chosen)
        verify_export(tmp)
        check_no_local_paths(tmp, local_paths(ticket))
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
    """The ticket as an upstream sparse encoder (the base model class, no task head): m ⊙ θ0, its tokenizer, the
    mask as a bitmask, a portable ticket.json and the card."""
    revision = ticket.info.get("config", {}).get("model.revision")
    pretrained = load_pretrained(ticket.model_name, get_task(ticket.task), revision=revision)
    here = paths.rewind_point(paths.run_of_ticket(ticket.path))
    rewind = (here if here.exists() else paths.rewind_point(Path(ticket.info["run_dir"]))) \
        if ticket.info.get("rewind_step") else None
    model = pretrained.build(ticket.info["seeds"][0], encoder_state=load_file(str(rewind)) if rewind else None)
    ticket.apply(model)
    encoder: Any = model.base_model  # a ticket is an encoder: a task head here would be random under any score
    encoder.config.id2label, encoder.config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    encoder.config.problem_type = None  # the library's defaults: a ticket implies no task
    _write_release(ticket, folder, repo_id, encoder, pretrained.tokenizer, "ticket (encoder, no task head)")
    copy_sentence_modules(base_model_folder(ticket.model_name, revision), folder)
    ticket_card(ticket, repo_id, folder).save(folder / "README.md")


def _write_release(ticket: Ticket, folder: Path, repo_id: str, model: Any, tokenizer: Any, release: str) -> int:
    """What both releases hold beside their card: the model (its config saying where the weights and the mask's
    data came from, no local path), the tokenizer, the mask as a bitmask and a portable ticket.json. Returns the
    model's weight count (the mask's and the card's whole-model sparsity)."""
    model.config.name_or_path = repo_id  # not this machine's path
    base_model, data_source = public_sources(ticket)
    model.config.bert_tickets = {"base_model": base_model, "data_source": data_source, "sparsity": ticket.sparsity,
                                 "method": ticket.info["method"], "release": release}
    with quiet("transformers"):  # no "Writing model shards" bar
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    _drop_local_settings(folder / "tokenizer_config.json")
    weights = sum(p.numel() for p in model.parameters())
    save_mask(paths.mask(folder), ticket.mask, ticket.info.get("prunable"), model_weights=weights)
    write_json(paths.ticket_info(folder), portable_info(ticket))
    return weights


def released_seed(ticket: Ticket, seed: int | None) -> int:
    """The evaluation seed a fine-tuned release publishes: `seed`, or the best kept one by the dev metric."""
    if ticket.info.get("config", {}).get("training.finetune") == "lora":
        raise UserError("releasing a LoRA fine-tuning is not supported: push the ticket, and the adapters with peft")
    kept = [s for s in ticket.info["seeds"] if paths.finetuned(ticket.path, s).is_file()]
    if not kept:
        raise UserError(f"{ticket.path} kept no fine-tuned model: evaluate it again keeping them, e.g. "
                        f"`bert-tickets evaluate --ticket {ticket.path} --task {ticket.task} --seeds "
                        f"{len(ticket.info['seeds'])} --set training.keep_finetuned=true`, then push that evaluation")
    if seed is not None:
        if seed not in kept:
            raise UserError(f"seed {seed} has no fine-tuned model in {ticket.path} (kept: {kept})")
        return seed
    primary = ticket.info["primary_metric"]
    scores = dict(zip(ticket.info["seeds"], ticket.info["metrics"]["ticket"][primary]["values"], strict=True))
    lower_is_better = primary in ("loss", "perplexity")
    return sorted(kept, key=lambda s: scores[s] if lower_is_better else -scores[s])[0]


def _write_finetuned(ticket: Ticket, folder: Path, repo_id: str, seed: int) -> None:
    """One evaluation seed's fine-tuned task model, head included, with its own scores in the card."""
    task = get_task(ticket.task)
    revision = ticket.info.get("config", {}).get("model.revision")
    pretrained = load_pretrained(ticket.model_name, task, revision=revision)
    model = pretrained.build(seed)
    load_model(model, str(paths.finetuned(ticket.path, seed)))  # its zeros are checked with the export's
    weights = _write_release(ticket, folder, repo_id, model, pretrained.tokenizer, f"fine-tuned, seed {seed}")
    prefix = str(model.base_model_prefix)
    finetuned_card(ticket, repo_id, seed, prefix, model_weights=weights).save(folder / "README.md")


def finetuned_card(ticket: Ticket, repo_id: str, seed: int, encoder_prefix: str,
                   model_weights: int | None = None) -> ModelCard:
    """The fine-tuned release's card: this model's own dev scores in the model-index (a working widget), every
    seed's beside it, dense for context."""
    info, task = ticket.info, get_task(ticket.task)
    model, source = public_sources(ticket)
    _, dataset_name = _card_dataset(task, source)
    index = info["seeds"].index(seed)
    own = {m: {"mean": s["values"][index]} for m, s in info["metrics"]["ticket"].items()}
    base = public_base(ticket)
    data = _card_data(ticket, repo_id, task.task_type, card_results(ticket, own, f"seed {seed}"),
                      {"release": "fine-tuned", "seed": seed, "encoder_prefix": encoder_prefix})
    metrics = list(info["metrics"]["ticket"])
    header = "| seed | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics)
    rows = [f"| {s}{' (this model)' if s == seed else ''} | "
            + " | ".join(f"{display_value(m, info['metrics']['ticket'][m]['values'][i]):.2f}" for m in metrics) + " |"
            for i, s in enumerate(info["seeds"])]
    dense = "| dense (mean ± std) | " + " | ".join(format_mean_std(m, info["metrics"]["dense"][m]) for m in metrics)
    body = FINETUNED_CARD.format(
        repo_id=repo_id, task=ticket.task, sparsity=100 * ticket.sparsity, seed=seed, base=base,
        found_on=found_on(info), notes=measured_notes(info), method=info["method"],
        method_label=get_method(info["method"]).label, project=project_link(),
        data=_describe_data(source, dataset_name), table="\n".join([header, *rows, dense + " |"]),
        n_seeds=len(info["seeds"]), model_pin=_describe_model(model),
        command=portable_text(info.get("command", "")), model_class=task.model_class().__name__,
        pipeline=task.task_type, recipe=recipe_table(info), citation=citation(project_url()),
        sparsity_line=sparsity_line(sparsity_report(ticket.mask), ticket.sparsity, model_weights))
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)


def local_paths(ticket: Ticket) -> list[str]:
    """This machine's paths a release must not contain: the run and output folders, a local model and the data."""
    config = ticket.info.get("config", {})
    found = [ticket.info.get("run_dir"), str(paths.output_dir_of_ticket(ticket.path.resolve())), str(Path.home())]
    found += [config.get(k) for k in ("data.data_dir", "data.train_file", "data.validation_file")]
    if _is_local(ticket.model_name):
        found += [ticket.model_name, str(Path(resolve_model_path(ticket.model_name)).resolve())]
    return sorted({str(p) for p in found if p and len(str(p)) > 1 and Path(str(p)).is_absolute()})


def check_no_local_paths(folder: Path, forbidden: list[str]) -> None:
    """No byte of the release names a path of this machine (they hold user names on clusters)."""
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size):
        with file.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if leaked := [p for p in forbidden if data.find(p.encode()) >= 0]:  # mapped: a model is never copied
                raise UserError(f"export check failed: {file.name} contains the local path {leaked[0]}")


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


def card_results(ticket: Ticket, scores: dict[str, dict[str, Any]], what: str) -> list[EvalResult]:
    """A model-index entry per metric: `scores` (metric -> {mean, ...}) on the task's dev split, in its units."""
    task = get_task(ticket.task)
    _, source = public_sources(ticket)
    dataset_id, dataset_name = _card_dataset(task, source)
    partial = partial_splits(ticket.info)
    results = []
    for metric, summary in scores.items():
        split, metric_id = task.hub_metric(metric)
        name = f"{metric} ({what})"
        if split in partial:  # the first `scored` examples: the split as `datasets` slices it, never the whole
            scored, whole = partial[split]
            split, name = f"{split}[:{scored}]", f"{metric} ({what}; {scored} of {whole or 'the'} examples)"
        results.append(EvalResult(
            task_type=task.task_type, dataset_type=dataset_id or "text", dataset_name=dataset_name,
            dataset_config=task.hub_dataset_config if dataset_id else None, dataset_split=split,
            metric_type=metric_id, metric_value=round(index_value(metric, summary["mean"]), 4),
            metric_name=name))
    return results


def partial_splits(info: TicketInfo) -> dict[str, tuple[int, int | None]]:
    """The evaluation splits (by their Hub names) scored on part of their examples: (scored, the split's size, None
    where not known). Tickets from before the counts were kept: every split, when `max_eval_samples` was set."""
    task = get_task(info["task"])
    hub_names = getattr(task, "hub_eval_splits", {})
    limit = info.get("config", {}).get("data.max_eval_samples")
    counted = info.get("evaluation_examples")
    if counted is None:
        splits = set(hub_names.values()) or {"validation"}
        return {split: (limit, None) for split in splits} if limit is not None else {}
    return {hub_names.get(split, split): (c["scored"], c["of"]) for split, c in counted.items()
            if (c["of"] is None and limit is not None) or (c["of"] is not None and c["scored"] < c["of"])}


def found_on(info: TicketInfo) -> str:
    """The task a ticket's mask was found on (an evaluation's: its source ticket's)."""
    return (info.get("mask_found_on") or {}).get("task", info["task"])


def measured_notes(info: TicketInfo) -> str:
    """What the scores of a card were measured on, where it is not simply the task's whole dev split after a mask
    found on that task: part of a split, a mask found on another task, runs that failed to learn."""
    notes = []
    if found_on(info) != info["task"]:
        origin = info.get("mask_found_on") or {}
        notes.append(f"The mask was found on **{origin['task']}** (by `{origin['method']}`) and is fine-tuned and "
                     f"evaluated on **{info['task']}** here.")
    for split, (scored, whole) in partial_splits(info).items():
        of = f"of the {whole}" if whole else "first"
        notes.append(f"Scores on part of the {split} split: {scored} {of} examples (`data.max_eval_samples`), not "
                     "the split's scores.")
    primary = info.get("primary_metric", "")
    counts = {arm: summary.get("failed") if (summary := info["metrics"][arm].get(primary)) else None for arm in ARMS}
    if any(n for n in counts.values()):
        seeds = len(info["seeds"])
        notes.append("Fine-tunings that failed to learn (dev score at the best constant prediction's, or training "
                     f"loss at chance): ticket {counts['ticket']} of {seeds}, dense {counts['dense']} of {seeds}; "
                     "they are in the means above.")
    return "".join(f"\n\n{note}" for note in notes)


def public_base(ticket: Ticket) -> str:
    """The base model as a release names it: its Hub id, or a local folder's name (never this machine's path)."""
    base = HUB_BASE.get(ticket.model_name.lower(), ticket.model_name)
    return Path(base).name if Path(base).is_absolute() or Path(base).exists() else base


def _is_local(model_name: str) -> bool:
    """A local checkpoint folder (not a Hub id, not the offline MiniLM package, whose Hub id is known)."""
    return model_name.lower() not in HUB_BASE and (Path(model_name).is_absolute() or Path(model_name).exists())


PATH_TOKEN = re.compile(r"(?<![\w.~-])(/[^\s'\"=,;]+)")  # an absolute path inside a text (a command, a setting)


def portable_text(text: str) -> str:
    """`text` with every absolute path replaced by its last part (a file: its folder and name), so nothing of this
    machine (user names, mount points) is published."""
    def short(match: re.Match[str]) -> str:
        path = Path(match.group(1))
        return f"{path.parent.name}/{path.name}" if path.suffix and path.parent.name else path.name
    return PATH_TOKEN.sub(short, text)


def portable_info(ticket: Ticket) -> dict[str, Any]:
    """ticket.json as a release carries it: the model and data as the card names them, every path shortened, no
    run folder; what was found and how it scored, unchanged."""
    model, source = public_sources(ticket)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return portable_text(value)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return [scrub(v) for v in value] if isinstance(value, list) else value

    info = {k: v for k, v in ticket.info.items() if k != "run_dir"}
    return scrub(info | {"model": public_base(ticket), "model_source": model, "data_source": source})


def ticket_card(ticket: Ticket, repo_id: str, folder: Path | None = None) -> ModelCard:
    """The ticket release's card: an upstream sparse encoder with no task head and no task score of its own (no
    model-index, a feature-extraction widget); what fine-tuning it gave, beside dense and random pruning, is
    evidence in the body; the files' sizes; how to keep the mask in one's own training."""
    info, task = ticket.info, get_task(ticket.task)
    model, source = public_sources(ticket)
    _, dataset_name = _card_dataset(task, source)
    base = public_base(ticket)
    sizes = release_sizes(folder, ticket) if folder is not None else {}
    data = _card_data(ticket, repo_id, "feature-extraction", None,
                      {"release": "ticket", "matching": info["matching"], "encoder_prefix": ""}, sizes)
    random = random_baseline(ticket)
    dense = info["metrics"]["dense"]
    rows = "\n".join(f"| {m} | {format_mean_std(m, s)} | {format_mean_std(m, dense[m])} | "
                     f"{format_mean_std(m, random[m]) if random and m in random else 'not run'} |"
                     for m, s in info["metrics"]["ticket"].items())
    body = TICKET_CARD.format(
        repo_id=repo_id, task=ticket.task, sparsity=100 * ticket.sparsity, rows=rows, method=info["method"],
        found_on=found_on(info), notes=measured_notes(info),
        base=base, primary=task.primary_metric, matching=matching_mark(info["matching"]),
        command=portable_text(info.get("command", "")), n_seeds=len(info["seeds"]), project=project_link(),
        data=_describe_data(source, dataset_name), model_pin=_describe_model(model),
        method_label=get_method(info["method"]).label, sizes=_sizes_table(sizes), recipe=recipe_table(info),
        sparsity_line=sparsity_line(sparsity_report(ticket.mask), ticket.sparsity, sizes.get("model_weights")),
        citation=citation(project_url()),
        sentence_note=SENTENCE_NOTE.format(repo_id=repo_id) if folder and (folder / "modules.json").is_file() else "",
        random_note="" if random else " Random pruning at this sparsity was not run with this recipe "
                                      "(`bert-tickets find ... --baselines random` runs it).")
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)


def _card_data(ticket: Ticket, repo_id: str, pipeline_tag: str, results: list[EvalResult] | None,
               release: dict[str, Any], sizes: dict[str, int] | None = None) -> ModelCardData:
    """The metadata both releases' cards share (base model, its license, language, dataset, tags, where the weights
    and the data came from, the mask), with each release's own `release` fields, widget and model-index."""
    info, task = ticket.info, get_task(ticket.task)
    model, source = public_sources(ticket)
    dataset_id, _ = _card_dataset(task, source)
    return ModelCardData(
        base_model=None if _is_local(ticket.model_name) else public_base(ticket), language=[task.language],
        datasets=[dataset_id] if dataset_id else None, license=base_model_license(ticket.model_name),
        library_name="transformers", pipeline_tag=pipeline_tag, model_name=repo_id.split("/")[-1],
        eval_results=results,
        tags=["lottery-ticket", "pruning", "sparse", "bert-tickets", f"sparsity-{round(100 * ticket.sparsity)}"],
        bert_tickets={**release, "task": ticket.task, "method": info["method"], "sparsity": ticket.sparsity,
                      "seeds": info["seeds"], "model_source": model, "data_source": source,
                      "mask": sparsity_config(ticket.mask, (sizes or {}).get("model_weights")), **(sizes or {})})


def random_baseline(ticket: Ticket) -> dict[str, Any] | None:
    """The random-pruning run beside the ticket (same recipe, seeds and sparsity), if it was run: its scores."""
    from bert_tickets.config import run_hash, task_config
    from bert_tickets.engine.run_folder import RunFolder
    from bert_tickets.studies.baselines import baseline_config

    try:
        settings = {k: v for k, v in ticket.info.get("config", {}).items() if k != "output_dir"}
        if "precision" in ticket.info:  # as the run resolved it, wherever the card is written
            settings["training.mixed_precision"] = ticket.info["precision"]
        config = task_config(ticket.task, None, settings | {
            "pruning.sparsity": ticket.info.get("target_sparsity", ticket.sparsity),
            "pruning.seeds": len(ticket.info["seeds"]), "output_dir": str(paths.output_dir_of_ticket(ticket.path))})
        if run_hash(config) != ticket.info.get("run_hash"):  # not the recipe it was found with: no claim
            return None
        info = RunFolder(baseline_config(config, "random", ticket.path, ticket.sparsity)).finished_ticket()
    except (UserError, IndexError, KeyError):
        return None
    return info["metrics"]["ticket"] if info else None


def release_sizes(folder: Path, ticket: Ticket) -> dict[str, int]:
    """Bytes of the release's model and mask, and what the older one-byte-a-weight mask would take."""
    weights = sum(int(m.numel()) for m in ticket.mask.values())
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:  # shapes from the header only
        model_weights = sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118
    return {"model_bytes": (folder / "model.safetensors").stat().st_size,
            "mask_bytes": paths.mask(folder).stat().st_size, "mask_bytes_one_byte_per_weight": weights,
            "prunable_weights": weights, "model_weights": model_weights}


def _sizes_table(sizes: dict[str, int]) -> str:
    if not sizes:
        return ""
    return (f"| `model.safetensors` | {sizes['model_bytes'] / 1e6:.1f} MB | dense fp32 storage, zeros included: no "
            "smaller than the base model |\n"
            f"| `mask.safetensors` | {sizes['mask_bytes'] / 1e6:.2f} MB | one bit per prunable weight "
            f"({sizes['prunable_weights']:,} weights; one byte each would be "
            f"{sizes['mask_bytes_one_byte_per_weight'] / 1e6:.1f} MB) |")


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


def project_url() -> str | None:
    """The project's home, from the installed package's metadata."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("bert-tickets").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    links = dict(url.split(", ", 1) for url in urls if ", " in url)
    return links.get("Repository") or links.get("Homepage")


def project_link() -> str:
    url = project_url()
    return f"[bert-tickets]({url})" if url else "bert-tickets"


def _drop_local_settings(path: Path) -> None:
    """transformers records how this machine loaded the tokenizer (offline or not); a release should not."""
    if path.exists():
        config = json.loads(path.read_text())
        if {config.pop(key, None) for key in ("local_files_only", "is_local")} != {None}:
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


# the end both cards share: how to rerun the recipe, and what to cite
REPRODUCE_AND_CITE = """## Reproduce

Base model: {model_pin}.

```bash
{command}
```

## Citation

{citation}
"""

TICKET_CARD = """
# {repo_id}: a {sparsity:.0f}%-sparse lottery ticket of {base} (found on {found_on})

An **upstream sparse encoder**: the pre-trained weights of **{base}** with {sparsity:.1f}% of its attention and
feed-forward matrices set to exactly zero, found by `{method}` ({method_label}) with {project} (after Chen et al.,
*The Lottery Ticket Hypothesis for Pre-trained BERT Networks*, NeurIPS 2020) on {data}. It has no task head and no
task score of its own: fine-tune it on a task, keeping the mask fixed (below). `mask.safetensors` holds the mask
(True = kept, keyed by the encoder's parameter names) and `ticket.json` how it was found.

{sparsity_line}{sentence_note}

## What fine-tuning it gave: evidence, not this checkpoint's score

Fine-tuned on {task} with the recipe in `ticket.json` ({n_seeds} seed(s), mean ± std), beside the dense pre-trained
model and a random mask of the same sparsity, same recipe and seeds.{random_note} Scores × 100 (accuracy, F1 and
exact match in %); loss and perplexity as they are.

| metric | ticket | dense | random pruning |
|---|---|---|---|
{rows}

Matching the dense model ({primary} within one standard deviation of dense, over the same seeds, failed runs
counted): **{matching}**.{notes}

## Files

| file | size | what |
|---|---|---|
{sizes}

A masked dense checkpoint is no faster and no smaller in memory than the dense model: the zeros are stored and
multiplied like any other weight unless a sparse kernel or format is used. The mask is described with
compressed-tensors' sparse-bitmask `sparsity_config`, field for field, in the card's `bert_tickets.mask` and in the
mask file's metadata (its `global_sparsity` is over the whole model, embeddings included).

## Fine-tune it with the mask kept fixed

```python
from transformers import AutoModelForSequenceClassification, Trainer
from bert_tickets import KeepMask, Ticket

model = AutoModelForSequenceClassification.from_pretrained("{repo_id}", num_labels=2)
trainer = Trainer(model=model, args=args, train_dataset=train,
                  callbacks=[KeepMask(Ticket.from_pretrained("{repo_id}"))])  # pruned weights stay exactly 0
trainer.train()
```

or `bert-tickets evaluate --ticket {repo_id} --task TASK`, the recipe that gave the table above.

## Recipe

The mask's search and the fine-tunings above, with the same settings for ticket, dense and random pruning:

{recipe}

""" + REPRODUCE_AND_CITE


SENTENCE_NOTE = """

Its base is a sentence-transformers model, and so is the ticket: `SentenceTransformer("{repo_id}")` loads it with
the base's modules (its `modules.json`, pooling and normalization), giving the embeddings of the masked encoder."""


FINETUNED_CARD = """
# {repo_id}: {base} fine-tuned on {task} from a {sparsity:.0f}%-sparse lottery ticket (found on {found_on})

The lottery ticket found by `{method}` ({method_label}) with {project} on {data} ({sparsity:.1f}% of the encoder's
attention and feed-forward matrices exactly zero), fine-tuned on {task} with the mask kept fixed: evaluation seed
{seed}, the best of {n_seeds} by the dev metric unless chosen. The model-index above holds **this model's own** dev
scores; every seed's are below. Scores × 100 (accuracy, F1 and exact match in %); loss and perplexity as they
are (the model-index above: percentages in %, correlations as `evaluate` gives them).{notes}

{sparsity_line}

{table}

```python
from transformers import pipeline
model = pipeline("{pipeline}", model="{repo_id}")
```

A masked dense checkpoint is no faster and no smaller in memory than the dense model: the zeros are stored and
multiplied like any other weight unless a sparse kernel or format is used. `mask.safetensors` holds the mask
(sparse-bitmask, compressed-tensors' field names in its metadata); `{model_class}` loads the model.

## Recipe

{recipe}

""" + REPRODUCE_AND_CITE
