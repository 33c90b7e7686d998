"""Packed fine-tunings: K independent fine-tunings of one model shape trained as one batched computation.

A study's fine-tunings are small (MiniLM, batch 32): alone, one keeps a GPU waiting on kernel launches and the
Python loop. Packed, every matrix product of K members is one batched product (`torch.bmm`) over K x B examples,
so one launch does K members' work.

How: the members' models are built as usual, then their Linear, LayerNorm and Embedding layers are replaced by
layers holding the K members' weights stacked on a new first dimension (parameter names unchanged). The Hugging
Face model then runs its own forward on K x B examples, member k owning rows k·B … (k+1)·B − 1. Our own layers
rather than `torch.func.vmap`: vmap over a transformers model stops at its attention-mask helpers
(`padding_mask.all()` is data-dependent control flow), while stacked layers leave sdpa attention, autocast and
`torch.compile` as they are.

Each member keeps what it would have alone: its initial weights and head (built from its seed), its mask, its
data order (its own sampler over one shared set of padded tensors), its gradient-norm clip (per member), its AdamW
state (AdamW is elementwise, so a stacked tensor is K independent optimizers), the same learning-rate schedule,
and its own dropout: every dropout mask of member k is counter-based, the bits of a hash of k's seed, the draw
site, the step and the element's position at a canonical shape (the recipe's batch size, the data's longest
padded length), so the numbers it draws never depend on K, on its packmates or on their lengths, and a compiled
step keeps its draws in its graph (`DropoutStreams`).

A member's record so depends on its seed and recipe only, never on the pack; but it is not its lone run's when
the model has dropout: alone, attention dropout is drawn inside torch's fused attention kernel from the global
generator, in an order no other computation can reproduce, so a packed member's dropout masks are its own,
not the lone run's. Packed evaluations therefore live in their own run folders (`training.pack` > 1 is part of the
run hash, and there every evaluation fine-tuning is packed, as a pack of one where it is alone). With dropout off,
a member's weights and scores equal its lone run's within float32 rounding. What else differs from a lone run
(both exercised by `tests/test_packed.py`): a member's batch is padded to the pack's longest (padding is masked out
of attention, but a longer reduction may round differently); a member whose epoch's last, smaller batch falls at a
step gets filler rows, weighted 0 in its loss.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bert_tickets.config import TrainingConfig
from bert_tickets.engine.batching import SEQUENCE_COLUMNS, PaddedTensors, can_pre_pad
from bert_tickets.engine.checkpoints import Checkpointer
from bert_tickets.engine.device_batches import DeviceBatches
from bert_tickets.engine.flat_update import FlatUpdate
from bert_tickets.engine.masks import Mask, MaskEnforcer, mask_digest
from bert_tickets.engine.step_graph import make_step, needs_tensor_learning_rate
from bert_tickets.engine.training import (
    SYNC_EVERY,
    FitResult,
    TrainingLoop,
    bucket_multiple,
    chance_loss,
    chance_score,
    evaluate,
    linear_schedule,
    total_steps,
    training_batches,
    with_4d_mask,
)
from bert_tickets.engine.unpadded import (
    PackedPooler,
    PackLayout,
    Unpadded,
    grouped_affine,
    grouped_linear,
    unpadded_attention,
    why_not_unpaddable,
)
from bert_tickets.errors import UserError
from bert_tickets.ranks import log
from bert_tickets.tasks import PreparedData, TaskAdapter


# --- stacked layers ---------------------------------------------------------------------------------------------
class PackedLinear(nn.Module):
    """K Linear layers: weight (K, out, in), bias (K, out); input rows grouped by member on the first dimension."""

    def __init__(self, members: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        has_bias = members[0].bias is not None
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in members])) if has_bias else None
        self.layout: PackLayout | None = None  # an unpadded pack's (`engine.unpadded`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout is not None and (unpadded := self.layout.of(x)) is not None:
            out = grouped_linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias, unpadded.counts)
            return out.reshape(*x.shape[:-1], out.shape[-1])
        k = self.weight.shape[0]
        rows = x.reshape(k, -1, x.shape[-1])
        weight_t = self.weight.transpose(1, 2)
        out = torch.baddbmm(self.bias.unsqueeze(1), rows, weight_t) if self.bias is not None \
            else torch.bmm(rows, weight_t)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class PackedLayerNorm(nn.Module):
    """K LayerNorms over the last dimension: weight and bias (K, H)."""

    def __init__(self, members: Sequence[nn.LayerNorm]):
        super().__init__()
        self.eps = members[0].eps
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in members]))
        self.layout: PackLayout | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, h = self.weight.shape
        if self.layout is not None and (unpadded := self.layout.of(x)) is not None:
            tokens = F.layer_norm(x.reshape(-1, h), (h,), eps=self.eps)
            return grouped_affine(tokens, self.weight, self.bias, unpadded.counts).reshape(x.shape)
        rows = F.layer_norm(x.reshape(k, -1, h), (h,), eps=self.eps)
        return torch.addcmul(self.bias.unsqueeze(1), rows, self.weight.unsqueeze(1)).reshape(x.shape)


class PackedEmbedding(nn.Module):
    """K embedding tables (K, V, H), looked up by (member, id) in one gather; the padding row gets no gradient."""

    def __init__(self, members: Sequence[nn.Embedding]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in members]))
        self.padding_idx = members[0].padding_idx  # its gradient row is zeroed before each step, as nn.Embedding does
        self.layout: PackLayout | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        k, h = self.weight.shape[0], self.weight.shape[-1]
        if self.layout is not None and (unpadded := self.layout.of(ids)) is not None:
            return self.weight[unpadded.members, ids.reshape(-1)].reshape(*ids.shape, h)
        members = torch.arange(k, device=ids.device).unsqueeze(1)
        rows = self.weight[members, ids.reshape(k, -1)]  # one gather; the table may be a strided flat view
        return rows.reshape(*ids.shape, h)


PACKED_LAYERS: dict[type, type] = {nn.Linear: PackedLinear, nn.LayerNorm: PackedLayerNorm,
                                   nn.Embedding: PackedEmbedding}


def _wrap64(value: int) -> int:
    """An unsigned 64-bit constant as the signed int64 torch holds (multiplication wraps alike)."""
    return value - (1 << 64) if value >= 1 << 63 else value


MIX_1, MIX_2, GOLDEN = _wrap64(0xBF58476D1CE4E5B9), _wrap64(0x94D049BB133111EB), _wrap64(0x9E3779B97F4A7C15)


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """A logical right shift of int64 values (torch's `>>` sign-extends)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser (Steele et al. 2014) on int64 tensors: a counter in, well-mixed bits out."""
    z = (z ^ _shift_right(z, 30)) * MIX_1
    z = (z ^ _shift_right(z, 27)) * MIX_2
    return z ^ _shift_right(z, 31)


class DropoutStreams:
    """Each member's dropout masks from a counter: the bits of splitmix64(seed, draw site, step, position) — no
    generator state, so a compiled step keeps its draws inside one graph (a torch generator breaks the graph at
    every draw) and a captured step replays with the step counter read from device memory. A position is the
    element's index at the canonical shape (rows = the recipe's batch size, sequence = the data's longest padded
    length), so a member's numbers never depend on K, on its packmates or on the step's lengths."""

    def __init__(self, seeds: Sequence[int], rows: int, length: int, device: torch.device):
        self.seeds = torch.tensor(list(seeds), dtype=torch.int64, device=device)
        self.step = torch.zeros((), dtype=torch.int64, device=device)  # advanced in place after each step
        self.rows, self.length, self.device = rows, length, device
        self.sites = 0
        self._positions: dict[tuple[tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}

    def new_site(self) -> int:
        """A number for one dropout call site (in the model's module order: the same in any pack)."""
        self.sites += 1
        return self.sites

    def advance(self) -> None:
        self.step.add_(1)

    def keep(self, shape: torch.Size, p: float, sequence_dims: tuple[int, ...], site: int) -> torch.Tensor:
        """Keep-masks (True: kept) for a tensor of `shape` whose first dimension holds the K members' rows."""
        k = len(self.seeds)
        positions = self._canonical_positions((shape[0] // k, *shape[1:]), sequence_dims)
        site_term = _wrap64(site * MIX_1 % (1 << 64))  # in Python: wrapped to int64 as a tensor product would be
        salt = splitmix64(self.seeds * GOLDEN + self.step * MIX_2 + site_term)  # (K,): per member, site and step
        bits = splitmix64(positions.unsqueeze(0) + salt.view(k, *[1] * positions.ndim))
        uniform = _shift_right(bits, 40).to(torch.float32) * (1.0 / (1 << 24))  # 24 bits: exact in float32
        return (uniform >= p).reshape(shape)

    def _canonical_positions(self, member_shape: tuple[int, ...], sequence_dims: tuple[int, ...]) -> torch.Tensor:
        """Each element's index in the canonical tensor (a mixed-radix number over its canonical sizes), cached
        per shape: arange-and-broadcast once, not every step."""
        key = (member_shape, sequence_dims)
        if key not in self._positions:
            canonical = [self.rows, *member_shape[1:]]
            for dim in sequence_dims:
                if member_shape[dim] > self.length:
                    raise RuntimeError(f"a packed batch of length {member_shape[dim]} is longer than the data's "
                                       f"{self.length}")
                canonical[dim] = self.length
            index = torch.zeros((), dtype=torch.int64, device=self.device)
            ndim = len(member_shape)
            for dim, size in enumerate(member_shape):
                coord = torch.arange(size, device=self.device).view(*[1] * dim, size, *[1] * (ndim - dim - 1))
                index = index * canonical[dim] + coord
            self._positions[key] = index
        return self._positions[key]


class PackedDropout(nn.Module):
    """nn.Dropout with each member's masks from its own stream (`DropoutStreams`). Hidden states (rows, sequence,
    hidden) and pooled ones (rows, hidden) through `forward`; attention probabilities (rows, heads, sequence,
    sequence) through `attention`, which the packed attention function calls."""

    def __init__(self, p: float, streams: DropoutStreams):
        super().__init__()
        self.p, self.streams = p, streams
        self.site = streams.new_site()  # hidden states draw at 2·site, attention probabilities at 2·site + 1
        self.layout: PackLayout | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unpadded = self.layout.of(x) if self.layout is not None else None
        return self._drop(x, (1,) if x.ndim == 3 else (), 2 * self.site, unpadded)

    def attention(self, weights: torch.Tensor) -> torch.Tensor:
        return self._drop(weights, (2, 3), 2 * self.site + 1)

    def _drop(self, x: torch.Tensor, sequence_dims: tuple[int, ...], site: int,
              unpadded: Unpadded | None = None) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if unpadded is None:
            keep = self.streams.keep(x.shape, self.p, sequence_dims, site)
        else:  # the draws its tokens have in the padded layout: the same masks as a padded pack's
            padded = torch.Size([unpadded.rows, unpadded.length, *x.shape[2:]])
            keep = unpadded.unpad(self.streams.keep(padded, self.p, sequence_dims, site)).reshape(x.shape)
        return x * keep.to(x.dtype) / (1 - self.p)


PACKED_ATTENTION = "bert_tickets_packed"
PACK_STATE = "pack_state.pt"  # a pack's checkpoint (`PackedLoop.save_state`)


def packed_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention for packs: torch's sdpa where no dropout applies (evaluation, dropout 0); with dropout, the same
    product written out so the probabilities go through the member's own dropout stream (sdpa would draw them
    from the global generator, inside its kernel). `attention_mask`: boolean (rows, 1, 1 or L, L), True = attend.
    In an unpadded pack (`engine.unpadded`) the tokens are padded back into their sequences for it."""
    layout = getattr(getattr(module, "dropout", None), "layout", None)
    if layout is not None and (unpadded := layout.of(query.transpose(1, 2))) is not None:
        return unpadded_attention(unpadded, packed_attention, module, query, key, value, dropout=dropout,
                                  scaling=scaling, **kwargs), None
    if not dropout:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=scaling,
                                      **kwargs)
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling or query.shape[-1] ** -0.5)
    if attention_mask is not None:
        scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
    weights = module.dropout.attention(torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype))
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


def _register_packed_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)


def pack_models(models: Sequence[nn.Module], streams: DropoutStreams | None = None,
                layout: PackLayout | None = None) -> nn.Module:
    """One model whose every parameter is the members' parameters stacked (names unchanged); with `streams`, its
    dropout draws each member's masks from the member's own stream; with `layout` (and `streams`), it computes on
    the real tokens only while the layout holds a step's (`engine.unpadded`)."""
    packed: Any = copy.deepcopy(models[0])
    for name, module in models[0].named_modules():
        if streams is not None and isinstance(module, nn.Dropout):
            parent, _, child = name.rpartition(".")
            setattr(packed.get_submodule(parent) if parent else packed, child, PackedDropout(module.p, streams))
            continue
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        layer = PACKED_LAYERS.get(type(module))
        if layer is None:
            raise UserError(f"cannot pack this model: {name} is a {type(module).__name__}, not one of "
                            f"{', '.join(t.__name__ for t in PACKED_LAYERS)}")
        parent, _, child = name.rpartition(".")
        setattr(packed.get_submodule(parent) if parent else packed, child,
                layer([m.get_submodule(name) for m in models]))
    if streams is not None:
        _register_packed_attention()
        packed.config._attn_implementation = PACKED_ATTENTION  # the pack's own copy of the config
        if layout is not None:
            _lay_out(packed, layout)
    return packed


def _lay_out(packed: nn.Module, layout: PackLayout) -> None:
    """Every packed layer shares the layout; BERT's pooler finds the sequences' first tokens in it."""
    for name, module in list(packed.named_modules()):
        if isinstance(module, (PackedLinear, PackedLayerNorm, PackedEmbedding, PackedDropout)):
            module.layout = layout
        elif type(module).__name__ == "BertPooler":
            parent, _, child = name.rpartition(".")
            setattr(packed.get_submodule(parent) if parent else packed, child, PackedPooler(module, layout))


def unpack_into(packed: nn.Module, k: int, model: nn.Module) -> None:
    """Member k's weights into `model` (one of the members' own models)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(packed.get_parameter(name)[k])


# --- training -----------------------------------------------------------------------------------------------
@dataclass
class Member:
    """One fine-tuning of a pack: its model (head and weights as built for its seed), seed and mask."""

    model: nn.Module
    seed: int
    mask: Mask | None = None


def why_not_packable(model_class: type, model_config: Any, task: TaskAdapter, training: TrainingConfig,
                     processes: int) -> str | None:
    """Why these fine-tunings cannot be packed (None: they can)."""
    classifier = model_class.__name__.endswith("ForSequenceClassification")
    reasons = [(not classifier or getattr(model_config, "problem_type", None) == "multi_label_classification",
                f"{task.name} is not a sentence(-pair) classification or regression task"),
               (training.finetune != "full", "LoRA fine-tuning"),
               (training.gradient_accumulation_steps != 1, "gradient accumulation"),
               (training.report_to != "none", "tracking (one wandb run per fine-tuning)"),
               (training.eval_every_steps is not None, "evaluation during training"),
               (processes != 1, "data parallel")]
    return next((reason for failed, reason in reasons if failed), None)


def pack_limit(requested: int, parameters: int, model_config: Any, training: TrainingConfig, max_length: int,
               device: torch.device) -> int:
    """`requested`, or fewer where the device's free memory would not hold them: per member its weights,
    gradients and AdamW moments (16 bytes a parameter) and its activations (a rough 48 bytes per hidden unit,
    token and layer, in 16 bits with what backward keeps)."""
    if device.type != "cuda":
        return requested
    free, _ = torch.cuda.mem_get_info(device)
    activations = 48 * training.batch_size * max_length * model_config.hidden_size * model_config.num_hidden_layers
    return max(1, min(requested, int(0.8 * free // (16 * parameters + activations))))


def member_losses(logits: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, k: int) -> torch.Tensor:
    """Each member's mean loss over its real examples (`real`: 1, filler rows 0), as the Hugging Face
    sequence-classification head computes it (mean squared error for one output, cross-entropy otherwise): (K,)."""
    logits, labels = logits.float().reshape(k, -1, logits.shape[-1]), labels.reshape(k, -1)
    if logits.shape[-1] == 1:
        per_example = (logits.squeeze(-1) - labels.float()) ** 2
    else:
        per_example = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").reshape(k, -1)
    weights = real.reshape(k, -1).to(per_example.dtype)
    return (per_example * weights).sum(dim=1) / weights.sum(dim=1)


def stack_batches(batches: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """The members' batches as one of K x B examples, B the largest member batch and every row padded to the
    longest. A member with fewer examples this step (its epoch's last, smaller batch comes at a step of its own
    order) gets filler rows: padding that attends to its first token only, weighted 0 in its loss (`real`).
    Explicit position ids, since the model's default (one row, broadcast) cannot be split by member."""
    rows = max(len(b["input_ids"]) for b in batches)
    length = max(b["input_ids"].shape[1] for b in batches)
    fill = {key: pad_id if value is None else value for key, value in SEQUENCE_COLUMNS.items()}  # as PaddedTensors
    out: dict[str, list[torch.Tensor]] = {key: [] for key in [*batches[0], "real"]}
    for batch in batches:
        missing = rows - len(batch["input_ids"])
        out["real"].append(torch.cat([torch.ones(len(batch["input_ids"]), dtype=torch.long),
                                      torch.zeros(missing, dtype=torch.long)]))
        for key, value in batch.items():
            if key in fill:
                value = F.pad(value, (0, length - value.shape[1], 0, missing), value=fill[key])
                if key == "attention_mask" and missing:
                    value[-missing:, 0] = 1  # a filler row attends to something: no empty softmax
            elif missing:
                value = torch.cat([value, value.new_zeros((missing, *value.shape[1:]))])
            out[key].append(value)
    stacked = {key: torch.cat(parts) for key, parts in out.items()}
    stacked["position_ids"] = torch.arange(length).repeat(len(stacked["input_ids"]), 1)  # its own memory: pinnable
    return stacked


class PackedLoop(TrainingLoop):
    """The packed training state: the stacked model, its masks, AdamW over the stacked parameters, the schedule,
    and each member's running losses and tokens (kept on the device, read at the end), trained by the one training
    loop (`training.TrainingLoop`: bar, checkpoints, resuming) as a lone fine-tuning is."""

    def __init__(self, members: Sequence[Member], training: TrainingConfig, steps: int, accelerator: Any,
                 longest: int, step_mode: str | None = None):
        super().__init__(accelerator, training, steps)
        self.k, self.device = len(members), accelerator.device
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(accelerator.mixed_precision)
        masked = self._mask_members(members)  # before stacking: the stacked weights start masked
        self.streams = DropoutStreams([m.seed for m in members], training.batch_size, longest, self.device)
        self.layout = self._unpadded_layout(members[0].model.config, training)
        self.packed = pack_models([m.model for m in members], self.streams, self.layout).to(self.device)
        mode = step_mode or training.pack_step
        if self.layout is not None and mode != "eager":
            log(f"pack step: an unpadded pack's shapes change every step; stepping eagerly, not {mode}")
            mode = "eager"
        tensor_lr = needs_tensor_learning_rate(mode, self.device)
        # re-seats the parameters as flat views; the stacked masks live on in its one flat mask only
        self.update = FlatUpdate(self.packed, self.k, self._stacked_masks(masked), training, tensor_lr=tensor_lr)
        self.padded_tables = [m for m in self.packed.modules()
                              if isinstance(m, PackedEmbedding) and m.padding_idx is not None]
        self.optimizer = self.update.optimizer
        self.scheduler = linear_schedule(self.optimizer, training, steps)
        self.optimizer._opt_called = True  # type: ignore[attr-defined]  # FlatUpdate steps AdamW unwrapped, each step
        if tensor_lr:  # the schedule's factors times a float: filled into the tensor with no read from the device
            self.scheduler.base_lrs = [training.learning_rate] * len(self.optimizer.param_groups)
        self.autocast_cache = mode != "graph"  # a captured graph must not keep autocast's cast weights
        self.stepper = make_step(mode, self, self.device)
        zeros = torch.zeros(self.k, device=self.device)
        self.loss_sum, self.tail_loss_sum = zeros.clone(), zeros.clone()
        self.tokens = torch.zeros(self.k, dtype=torch.long, device=self.device)
        self.tail_batches = 0

    # --- as the training loop asks -------------------------------------------------------------------
    def train_batch(self, batch: dict[str, torch.Tensor]) -> bool:
        self.train_step(batch)
        self.micro_batches += 1
        return True

    def mean_loss(self) -> float:
        return (self.loss_sum / max(self.step, 1)).mean().item()

    def callback_model(self) -> nn.Module:
        return self.packed

    def state_progress(self) -> dict[str, Any]:
        return {"tail_batches": self.tail_batches}

    def restore_progress(self, progress: dict[str, Any]) -> None:
        self.tail_batches = progress["tail_batches"]

    def save_state(self, output_dir: str) -> None:
        """The pack's whole state (its flat weights, AdamW's moments, the schedule, the dropout counter, the
        members' running sums) in one file: the checkpoint `checkpoints.Checkpointer` swaps in atomically."""
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        torch.save({"decay": self.update.decay.data, "rest": self.update.rest.data,
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "dropout_step": self.streams.step, "loss_sum": self.loss_sum,
                    "tail_loss_sum": self.tail_loss_sum, "tokens": self.tokens}, Path(output_dir) / PACK_STATE)

    def load_state(self, input_dir: str) -> None:
        state = torch.load(Path(input_dir) / PACK_STATE, map_location=self.device, weights_only=True)
        with torch.no_grad():  # in place: every parameter is a view of these buffers
            self.update.decay.data.copy_(state["decay"])
            self.update.rest.data.copy_(state["rest"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for name in ("loss_sum", "tail_loss_sum", "tokens"):
            getattr(self, name).copy_(state[name])
        self.streams.step.copy_(state["dropout_step"])

    def _mask_members(self, members: Sequence[Member]) -> dict[str, list[torch.Tensor | None]]:
        """Mask each member's weights (MaskEnforcer, as alone); full parameter name -> each member's mask."""
        masked: dict[str, list[torch.Tensor | None]] = {}
        for k, member in enumerate(members):
            if member.mask is None:
                continue
            enforcer = MaskEnforcer(member.model, member.mask)
            ids = {id(p): n for n, p in member.model.named_parameters()}
            for param, m in zip(enforcer.params, enforcer.masks, strict=True):
                masked.setdefault(ids[id(param)], [None] * self.k)[k] = m
        return masked

    def _stacked_masks(self, masked: dict[str, list[torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        """Parameter name -> (K, ...) mask, ones for a member without a mask."""
        stacked = {}
        for name, per_member in masked.items():
            shape = self.packed.get_parameter(name).shape[1:]
            stacked[name] = torch.stack([m if m is not None else torch.ones(shape) for m in per_member]).to(
                self.device, self.packed.get_parameter(name).dtype)
        return stacked

    def train_step(self, batch: dict[str, torch.Tensor]) -> None:
        labels, real = batch.pop("labels"), batch.pop("real")
        # what sdpa and the packed attention take as they are; the step as `training.pack_step` launches it
        detached = self.stepper(with_4d_mask(batch), labels, real)
        self.scheduler.step()
        self.loss_sum += detached
        if self.step >= self.tail_from:
            self.tail_loss_sum += detached
            self.tail_batches += 1
        self.tokens += (batch["attention_mask"].sum(dim=1) * real).reshape(self.k, -1).sum(dim=1)
        self.step += 1

    @staticmethod
    def _unpadded_layout(model_config: Any, training: TrainingConfig) -> PackLayout | None:
        if not training.pack_unpad:
            return None
        if (reason := why_not_unpaddable(model_config)) is not None:
            log(f"training.pack_unpad: padded ({reason})")
            return None
        return PackLayout()

    @property
    def how_stepped(self) -> str:
        """What a member's record says of its step (`pack_step`)."""
        return self.stepper.ran + (", unpadded" if self.layout is not None else "")

    # --- the step's parts, as `step_graph`'s strategies launch them ------------------------------------
    def forward_losses(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                       real: torch.Tensor) -> torch.Tensor:
        unpadded = None
        if self.layout is not None:  # the real tokens only, end to end: (1, T)
            unpadded = Unpadded(inputs["attention_mask"][:, 0, 0, :], self.k)
            inputs = {name: unpadded.flat(t) for name, t in inputs.items() if name != "attention_mask"}
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None,
                            cache_enabled=self.autocast_cache), \
                self.layout.using(unpadded) if self.layout is not None and unpadded is not None else nullcontext():
            logits = self.packed(**inputs).logits
        return member_losses(logits, labels, real, self.k)

    def backward(self, losses: torch.Tensor) -> None:
        with warnings.catch_warnings():  # the flat views' gradients are strided on purpose (FlatUpdate)
            warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
            losses.sum().backward()  # the members' parameters are disjoint: each gets its own loss's gradient

    def after_backward(self) -> None:
        """As `training._optimizer_step`, per member: mask the gradients, clip each member's global norm, step
        (`FlatUpdate`: a few operations over flat buffers, not hundreds over the stacked tensors); then the
        dropout counter moves on. The schedule is stepped by the caller, outside any graph."""
        for table in self.padded_tables:  # each has a padding index and a gradient (it took part in the step)
            table.weight.grad.select(1, table.padding_idx).zero_()  # type: ignore[union-attr, arg-type]
        self.update.step()
        self.streams.advance()


def fine_tune_packed(members: Sequence[Member], data: PreparedData, task: TaskAdapter, tokenizer: Any,
                     training: TrainingConfig, accelerator: Any, on_step: Callable[[int], None] | None = None,
                     step_mode: str | None = None, checkpoint: Path | None = None,
                     desc: str = "packed fine-tunings") -> list[FitResult]:
    """Train the members as one computation; then each member's weights go back into its own model, which is scored
    by `training.evaluate`, as alone. Returns each member's FitResult, in order. With a `checkpoint` folder the
    pack's state is saved there now and then, and a rerun of the same members resumes from it."""
    device = accelerator.device
    model = members[0].model
    reason = why_not_packable(type(model), model.config, task, training, accelerator.num_processes)
    if reason:
        raise UserError(f"these fine-tunings cannot be packed: {reason}")
    multiple = bucket_multiple(device)
    collate = task.collator(tokenizer, train=True, pad_to_multiple_of=multiple, data=data)
    # the padded tensors once for all members (building them is seconds per 10,000 examples); each its own order
    padded = PaddedTensors(data.train, tokenizer.pad_token_id, multiple) \
        if can_pre_pad(collate, tokenizer, data.train) else None
    loaders = [training_batches(data.train, collate, tokenizer, training, m.seed, multiple, padded) for m in members]
    steps = total_steps(training, len(loaders[0]))
    loop = PackedLoop(members, training, steps, accelerator, _longest(data, padded, multiple), step_mode)
    loop.packed.train()
    # a checkpoint belongs to these members (seeds and masks): another pack's is discarded
    identity = {"members": [[m.seed, None if m.mask is None else mask_digest(m.mask)] for m in members]}
    checkpoints = Checkpointer(checkpoint, accelerator, training, SYNC_EVERY, state=loop, identity=identity)
    loop.run(_step_batches(loaders, padded, tokenizer.pad_token_id, device), checkpoints,
             (lambda step, _: on_step(step)) if on_step else None, desc, None)
    return _member_results(members, loop, data, task, tokenizer, training, accelerator, loop.seconds)


def _step_batches(loaders: Sequence[Any], padded: PaddedTensors | None, pad_token_id: int,
                  device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The pack's batches, epoch after epoch: gathered on the device from the padded table (`DeviceBatches`), or
    where the task cannot pre-pad, each member's loader's batches stacked on the host and copied over."""
    if padded is not None:
        yield from DeviceBatches(padded, loaders, pad_token_id, device)
        return
    while True:
        for batches in zip(*loaders, strict=True):
            yield {k: _pinned(v).to(device, non_blocking=True) for k, v in stack_batches(batches, pad_token_id).items()}


def _longest(data: PreparedData, padded: PaddedTensors | None, multiple: int | None) -> int:
    """The longest a packed batch can be: the data's longest example, rounded up to the bucket multiple."""
    longest = int(padded.lengths.max()) if padded is not None else max(len(ids) for ids in data.train["input_ids"])
    return math.ceil(longest / multiple) * multiple if multiple else longest


def _pinned(t: torch.Tensor) -> torch.Tensor:
    """A copy from pageable memory waits for the device's queue; from pinned memory it does not."""
    return t.pin_memory() if torch.cuda.is_available() else t


def _member_results(members: Sequence[Member], loop: PackedLoop, data: PreparedData, task: TaskAdapter,
                    tokenizer: Any, training: TrainingConfig, accelerator: Any, seconds: float) -> list[FitResult]:
    collate = task.collator(tokenizer, train=False, pad_to_multiple_of=bucket_multiple(loop.device))
    chance, constant = chance_loss(data.train), chance_score(task, data)
    losses = (loop.loss_sum / max(loop.step, 1)).tolist()
    tails = (loop.tail_loss_sum / max(loop.tail_batches, 1)).tolist()
    tokens, revived = loop.tokens.tolist(), loop.update.revived()
    final_lr = loop.scheduler.get_last_lr()[0]
    results = []
    for k, member in enumerate(members):
        unpack_into(loop.packed, k, member.model)
        model = accelerator.prepare_model(member.model.to(loop.device), evaluation_mode=True)
        eval_losses: dict[str, float] = {}
        scores = evaluate(model, data, task, collate, training.eval_batch_size, accelerator, losses=eval_losses)
        results.append(FitResult(
            metrics=scores, train_loss=losses[k], steps=loop.step, seconds=seconds, revived_weights=revived[k],
            trainable_parameters=sum(p.numel() for p in member.model.parameters() if p.requires_grad),
            tokens=tokens[k], precision=accelerator.mixed_precision, final_learning_rate=final_lr,
            step_ends=loop.step_ends, final_train_loss=tails[k] if loop.tail_batches else None,
            chance_loss=chance, eval_loss=eval_losses, pack_size=len(members), primary_metric=task.primary_metric,
            chance_score=constant, pack_step=loop.how_stepped))
    accelerator.free_memory()
    return results
