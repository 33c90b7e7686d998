"""Typed hyperparameters: dataclasses, YAML presets, command-line overrides and the run hash.

A run folder is named by a hash of the settings that differ from the code defaults, so the same
study (however it was spelled: preset, flag or override) always lands in the same folder.
"""

import dataclasses
import hashlib
import json
import shlex
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bert_tickets.errors import UserError

# The paper's prunable set: every encoder layer's attention and feed-forward matrices, plus the pooler.
# Patterns match names relative to the encoder (`model.base_model`); BERT and RoBERTa share them.
DEFAULT_PRUNABLE = [
    r"encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.weight",
    r"encoder\.layer\.\d+\.attention\.output\.dense\.weight",
    r"encoder\.layer\.\d+\.(intermediate|output)\.dense\.weight",
    r"transformer\.layer\.\d+\.(attention\.(q_lin|k_lin|v_lin|out_lin)|ffn\.lin[12])\.weight",  # DistilBERT
    r"pooler\.dense\.weight",
]


@dataclass
class ModelConfig:
    name: str = "bert-base-uncased"


@dataclass
class DataConfig:
    task: str = "mnli"
    data_dir: str | None = None
    max_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    doc_stride: int = 128  # SQuAD: overlap of consecutive windows of a long context
    max_answer_length: int = 30  # SQuAD: longest predicted answer, in tokens
    train_file: str | None = None  # masked-LM: raw text files, instead of --data-dir or the Hub
    validation_file: str | None = None
    mlm_probability: float = 0.15
    mask_seed: int = 1234  # masked-LM: the evaluation set's masking, fixed so scores are comparable


@dataclass
class TrainingConfig:
    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 3.0
    max_steps: int | None = None
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # clip the global gradient norm, as HF's fine-tuning (then and now) does; 0 = off
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step (the batch is batch_size times this)
    seed: int = 0
    mixed_precision: str = "auto"
    eval_batch_size: int = 128
    group_by_length: bool = True  # batches of similar-length examples (less padding); order still random
    report_to: str = "none"
    wandb_project: str = "bert-tickets"
    study: str = ""  # the wandb group; empty: the run folder (find) or the transfer matrix (transfer)
    finetune: str = "full"  # full | lora: LoRA adapters on the attention projections, backbone frozen
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value"])


# imp: iterative magnitude pruning with rewinding; oneshot: one dense fine-tuning, prune to the target at once,
# rewind; magnitude: prune θ0 itself by magnitude (no training); random: a random mask at the same sparsity;
# ticket: the mask of a given ticket (`pruning.ticket`), fine-tuned on this run's task (`bert-tickets evaluate`);
# reinit: that mask on randomly re-initialised encoder weights instead of θ0; shuffle: that mask on θ0 with each
# prunable matrix's weights shuffled (the paper's θ0''); standard: IMP's levels without rewinding, each level
# training on from the last (standard pruning; its score is the pruned, trained network).
METHODS = ("imp", "oneshot", "magnitude", "random", "ticket", "reinit", "shuffle", "standard")
NEEDS_TICKET = ("ticket", "reinit", "shuffle")
SCOPES = ("global", "layerwise")


@dataclass
class PruningConfig:
    method: str = "imp"
    sparsity: float = 0.7
    schedule: str = "linear"
    rate: float = 0.1
    rewind_step: int = 0
    keep_head: bool = False
    ticket: str | None = None
    seeds: int = 1
    prunable: list[str] = field(default_factory=lambda: list(DEFAULT_PRUNABLE))
    # global: one magnitude threshold over all prunable matrices (the paper); layerwise: each matrix pruned to
    # the level's sparsity on its own, so no matrix can be emptied by a threshold set by the others
    scope: str = "global"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    output_dir: str = "runs"

    def validate(self) -> "Config":
        p, t = self.pruning, self.training
        if not 0.0 < p.sparsity < 1.0:
            raise UserError(f"sparsity must be in (0, 1), got {p.sparsity}")
        if not 0.0 < p.rate < 1.0:
            raise UserError(f"pruning rate must be in (0, 1), got {p.rate}")
        if p.method not in METHODS:
            raise UserError(f"unknown method {p.method!r} (known: {', '.join(METHODS)})")
        if (p.method in NEEDS_TICKET) != (p.ticket is not None):
            raise UserError(f"methods {' and '.join(NEEDS_TICKET)} need a ticket folder (--ticket), the others none")
        if p.rewind_step and p.method not in ("imp", "oneshot"):
            raise UserError(f"rewinding to a training step needs a trained level 0: not method {p.method!r}")
        if p.schedule not in ("linear", "geometric"):
            raise UserError(f"pruning.schedule must be 'linear' or 'geometric', got {p.schedule!r}")
        if p.scope not in SCOPES:
            raise UserError(f"pruning.scope must be one of {', '.join(SCOPES)}, got {p.scope!r}")
        if t.max_grad_norm < 0:
            raise UserError(f"training.max_grad_norm must be >= 0 (0 = no clipping), got {t.max_grad_norm}")
        if t.gradient_accumulation_steps < 1:
            raise UserError(f"training.gradient_accumulation_steps must be at least 1, got "
                            f"{t.gradient_accumulation_steps}")
        if p.seeds < 1:
            raise UserError(f"seeds must be at least 1, got {p.seeds}")
        if t.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise UserError(f"training.mixed_precision must be auto, bf16, fp16 or no, got {t.mixed_precision!r}")
        if t.finetune not in ("full", "lora"):
            raise UserError(f"training.finetune must be 'full' or 'lora', got {t.finetune!r}")
        if t.finetune == "lora" and p.method in ("imp", "oneshot", "standard"):
            raise UserError(f"LoRA leaves the backbone frozen, so it cannot find a mask by training ({p.method}); "
                            "use it to evaluate fixed masks (evaluate, transfer, magnitude, random, reinit)")
        if t.report_to not in ("none", "wandb"):
            raise UserError(f"training.report_to must be 'none' or 'wandb', got {t.report_to!r}")
        for name in ("batch_size", "eval_batch_size", "max_steps", "max_train_samples", "max_eval_samples"):
            section = self.training if hasattr(self.training, name) else self.data
            value = getattr(section, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Settings that change where results are written or how many are gathered, never what a level computes.
NOT_HASHED = {"output_dir", "pruning.sparsity", "pruning.seeds", "training.report_to", "training.eval_batch_size",
              "training.wandb_project", "training.study"}


def non_default_settings(config: Config) -> dict[str, Any]:
    """Flat `section.key -> value` for every setting that differs from the code defaults."""
    ours, defaults = _flatten(config.to_dict()), _flatten(Config().to_dict())
    return {k: v for k, v in ours.items() if v != defaults.get(k) and k not in NOT_HASHED}


def reproduce_command(config: Config) -> str:
    """A `bert-tickets find` command line that recreates this config (and so lands in the same run folder)."""
    parts = ["bert-tickets find", f"--task {config.data.task}", f"--sparsity {config.pruning.sparsity}"]
    if config.pruning.seeds != 1:
        parts.append(f"--seeds {config.pruning.seeds}")
    for key, value in non_default_settings(config).items():
        if key != "data.task":
            text = value if isinstance(value, str) else json.dumps(value)
            parts.append(f"--set {shlex.quote(f'{key}={text}')}")
    return " ".join(parts)


def run_hash(config: Config) -> str:
    return settings_hash(non_default_settings(config))


def dense_hash(config: Config) -> str:
    """The hash of what a dense fine-tuning depends on: everything but the pruning settings."""
    return settings_hash({k: v for k, v in non_default_settings(config).items() if not k.startswith("pruning.")})


# Bumped when the code's defaults change what a run computes without changing any setting, so results made by
# the old recipe are never reused as if they were the new one's (2: gradients clipped at norm 1.0 by default;
# 3: mixed_precision "auto" is bf16 autocast on CPUs with native bf16 too, not only on GPUs).
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


def read_yaml_text(source: str, package: str = "bert_tickets.configs", kind: str = "config") -> str:
    """A YAML file's text, or the packaged preset of that name."""
    path = Path(source)
    if path.exists():
        return path.read_text()
    preset = resources.files(package).joinpath(f"{source}.yaml")
    if not preset.is_file():
        known = ", ".join(preset_names(package))
        raise UserError(f"{kind} {source!r} is neither a file nor a preset (presets: {known})")
    return preset.read_text()


def yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """The YAML text as a mapping, or one clear error naming `where`."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
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


def _coerce(value: Any, hint: Any, dotted: str) -> Any:
    if isinstance(value, str) and hint is not str:
        value = yaml.safe_load(value) if value.strip() else value
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
            if isinstance(value, bool):
                return value
            raise ValueError
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        name = getattr(base, "__name__", str(base))
        raise UserError(f"config key {dotted!r} expects {name}, got {value!r}") from None
