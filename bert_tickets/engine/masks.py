"""Masks are data: which encoder weights are prunable, how to prune them, and how to keep them at zero.

A mask maps an encoder parameter name (relative to `model.base_model`, so without any task-head prefix)
to a boolean tensor: True keeps the weight, False prunes it. The same keys come out whatever head is
attached, so a mask found on one task applies to a model built for any other.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from bert_tickets.errors import UserError
from bert_tickets.files import atomic_write

Mask = dict[str, torch.Tensor]
# 1: one boolean per weight; 2: bitmasks; 3: bitmasks with compressed-tensors' sparsity config exactly (all load)
MASK_FORMAT = "bert-tickets-mask/3"
BITMASK_FORMAT = "sparse-bitmask"  # compressed-tensors' name for this layout
# A pooler exists in classification BERTs but not in masked-LM ones or RoBERTa classifiers: a mask may
# carry it or not, and a model may have it or not; a missing side simply leaves the pooler dense.
OPTIONAL_KEYS = re.compile(r"(^|\.)pooler\.")


MATRIX_TYPES = {  # encoder parameter name pattern -> the paper's matrix type
    r"attention\.self\.query": "query", r"attention\.self\.key": "key", r"attention\.self\.value": "value",
    r"attention\.output\.dense": "attn-output", r"intermediate\.dense": "intermediate",
    r"layer\.\d+\.output\.dense": "output", r"pooler\.dense": "pooler",
}


def matrix_type(name: str) -> str:
    return next((kind for pattern, kind in MATRIX_TYPES.items() if re.search(pattern, name)), "other")


def jaccard(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Shared kept weights over weights kept by either, over the entries both masks hold."""
    names = [n for n in a if n in b]
    shared = sum(int((a[n] & b[n]).sum()) for n in names)
    either = sum(int((a[n] | b[n]).sum()) for n in names)
    return shared / either if either else float("nan")


def relative_drift(start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """How far training moved the weights: ||θ_T − θ_start|| / ||θ_start|| per matrix type and over all ("all"),
    Frobenius norms pooled over the matrices of a type."""
    moved: dict[str, float] = {}
    size: dict[str, float] = {}
    for name, before in start.items():
        after = end[name].detach().float().cpu()
        before = before.float()
        for kind in (matrix_type(name), "all"):
            moved[kind] = moved.get(kind, 0.0) + float((after - before).pow(2).sum())
            size[kind] = size.get(kind, 0.0) + float(before.pow(2).sum())
    return {kind: (moved[kind] / size[kind]) ** 0.5 if size[kind] else 0.0 for kind in moved}


def encoder_of(model: nn.Module) -> nn.Module:
    """The pre-trained encoder inside a task model (`model.base_model`), or the model itself."""
    return getattr(model, "base_model", model)


def prunable_parameters(model: nn.Module, patterns: Iterable[str]) -> dict[str, torch.Tensor]:
    """Encoder parameters whose name fully matches one of the patterns, in the model's own order."""
    return select_prunable(dict(encoder_of(model).named_parameters()), patterns)


def select_prunable(named: Mapping[str, torch.Tensor], patterns: Iterable[str]) -> dict[str, torch.Tensor]:
    """The entries of a name -> tensor mapping (parameters or a state dict) that the patterns select."""
    compiled = [re.compile(p) for p in patterns]
    return {name: t for name, t in named.items() if any(c.fullmatch(name) for c in compiled)}


def full_mask(params: Mapping[str, torch.Tensor]) -> Mask:
    return {name: torch.ones_like(p, dtype=torch.bool, device="cpu") for name, p in params.items()}


def global_magnitude_mask(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                          sparsity: float) -> Mask:
    """Prune the smallest-magnitude surviving weights, one threshold over all matrices, until `sparsity`
    of all prunable weights are pruned. Ties are broken by position, so the result is deterministic."""
    scores = {n: torch.where(mask[n], weights[n].detach().abs().float().cpu(), -1.0) for n in weights}
    return _prune_lowest(scores, sparsity)


def layerwise_magnitude_mask(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                             sparsity: float) -> Mask:
    """As `global_magnitude_mask`, but each matrix gets its own threshold and ends at `sparsity` itself."""
    out: Mask = {}
    for name in weights:
        out |= global_magnitude_mask({name: weights[name]}, {name: mask[name]}, sparsity)
    return out


MAGNITUDE_MASKS = {"global": global_magnitude_mask, "layerwise": layerwise_magnitude_mask}


def magnitude_mask(weights: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], sparsity: float,
                   scope: str = "global") -> Mask:
    """Magnitude pruning with one threshold over all matrices (`global`) or one per matrix (`layerwise`)."""
    return MAGNITUDE_MASKS[scope](weights, mask, sparsity)


def random_mask(params: Mapping[str, torch.Tensor], sparsity: float, seed: int) -> Mask:
    """A uniformly random mask with the same global sparsity (the random-pruning control)."""
    generator = torch.Generator().manual_seed(seed)
    scores = {n: torch.rand(p.shape, generator=generator) for n, p in params.items()}
    return _prune_lowest(scores, sparsity)


def _prune_lowest(scores: Mapping[str, torch.Tensor], sparsity: float) -> Mask:
    names = list(scores)
    flat = torch.cat([scores[n].flatten() for n in names])
    n_prune = round(sparsity * flat.numel())
    already = int((flat < 0).sum())
    if n_prune < already:
        raise ValueError(f"target sparsity {sparsity} is below the mask's current {already / flat.numel():.4f}")
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.sort(flat, stable=True).indices[:n_prune]] = False
    out, start = {}, 0
    for name in names:
        size = scores[name].numel()
        out[name] = keep[start:start + size].view(scores[name].shape).clone()
        start += size
    return out


# A matrix is "collapsed" when it keeps less than this fraction of what the mask keeps overall: pruned ten times
# faster than the network as a whole. In healthy IMP masks the least-kept matrix is far above it (MiniLM on STS-B,
# pooler left dense: every matrix keeps 63-86% at 25% sparsity and 31-69% at 50%, i.e. at least 0.61x the overall
# kept fraction); MiniLM's never-trained pooler under one global threshold keeps 10.6% at 25% and 0.2% at 50%
# (STS-B then learns nothing). At 90% sparsity the rule flags a matrix keeping under 1%.
COLLAPSE_RATIO = 0.1


def sparsity_report(mask: Mapping[str, torch.Tensor]) -> dict:
    """Fraction pruned, overall (over the prunable set) and per matrix, and the matrices pruned far beyond
    the rest (`collapsed`, see COLLAPSE_RATIO): a silent collapse there can sink a whole ticket."""
    total = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    per_matrix = {n: 1.0 - int(m.sum()) / m.numel() for n, m in mask.items()}
    overall_kept = kept / total if total else 1.0
    collapsed = {n: s for n, s in per_matrix.items() if 1.0 - s < COLLAPSE_RATIO * overall_kept}
    return {
        "sparsity": 1.0 - overall_kept,
        "prunable_weights": total,
        "remaining_weights": kept,
        "per_matrix": per_matrix,
        "collapsed": collapsed,
        "collapse_rule": f"a matrix keeping less than {COLLAPSE_RATIO:g} x the overall kept fraction",
    }


def collapse_warning(report: Mapping) -> str | None:
    """One line naming the collapsed matrices of a `sparsity_report`, or None."""
    collapsed = report.get("collapsed") or {}
    if not collapsed:
        return None
    worst = ", ".join(f"{n} {s:.1%}" for n, s in sorted(collapsed.items(), key=lambda x: -x[1])[:3])
    return (f"{len(collapsed)} matrix(es) pruned far beyond the mask's {report['sparsity']:.1%} ({worst}); "
            "a layer emptied by the global threshold can sink the model (an untrained pooler?): "
            "consider leaving it out of pruning.prunable, or pruning.scope=layerwise")


def magnitude_outliers(weights: Mapping[str, torch.Tensor], factor: float = 3.0) -> dict[str, float]:
    """Matrices whose mean |w| is `factor` times below the median matrix's: one global threshold prunes them
    first. An untrained layer shows up here: MiniLM's pooler has 0.0073, 6.9x below the median matrix (0.050)."""
    means = {n: float(w.detach().abs().float().mean()) for n, w in weights.items()}
    if len(means) < 3:
        return {}
    median = float(torch.tensor(list(means.values())).median())
    return {n: m for n, m in means.items() if m * factor < median}


def save_mask(path: str | Path, mask: Mapping[str, torch.Tensor], prunable: list[str] | None = None,
              model_weights: int | None = None) -> Path:
    """A mask as bitmasks, one bit per weight (8x smaller than booleans), in compressed-tensors' layout:
    `<name>.bitmask` rows packed little-endian (byte-identical to its `pack_bitmasks`) and `<name>.shape`. The
    metadata's one entry, `bert_tickets`, holds our writer and key convention beside `sparsity_config`:
    compressed-tensors' sparsity config, field for field (`model_weights`: the whole model's weight count, for its
    `global_sparsity`)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, keep in mask.items():
        keep = keep.to(torch.bool).cpu()
        rows = keep.reshape(-1, keep.shape[-1]) if keep.dim() else keep.reshape(1, 1)
        tensors[f"{name}.bitmask"] = torch.from_numpy(np.packbits(rows.numpy(), axis=-1, bitorder="little"))
        tensors[f"{name}.shape"] = torch.tensor(list(keep.shape), dtype=torch.int64)
    # one metadata entry: safetensors writes several in no fixed order, and the same mask must give the same bytes
    ours = {"writer": MASK_FORMAT, "keys": "encoder parameter names", "prunable": prunable,
            "sparsity_config": sparsity_config(mask, model_weights)}
    metadata = {"bert_tickets": json.dumps(ours, sort_keys=True)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def mask_digest(mask: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a mask's content (names, shapes, kept bits), whatever file layout or metadata holds it: what
    names a mask in the results made with it (a different mask is never read as this one's)."""
    digest = hashlib.sha256()
    for name in sorted(mask):
        keep = mask[name].to(torch.bool).cpu()
        digest.update(json.dumps([name, list(keep.shape)]).encode())
        digest.update(np.packbits(keep.reshape(-1).numpy()).tobytes())
    return digest.hexdigest()


def module_targets(mask: Mapping[str, torch.Tensor]) -> list[str]:
    """compressed-tensors' `targets` for the masked weights: one `re:` pattern per module, matching its name in the
    encoder or under a task model's prefix (`bert.encoder.layer.0.attention.self.query`)."""
    modules = sorted({name.rsplit(".", 1)[0] for name in mask})
    return [f"re:(.*\\.)?{re.escape(module)}$" for module in modules]


def sparsity_config(mask: Mapping[str, torch.Tensor], model_weights: int | None = None) -> dict[str, Any]:
    """The mask as compressed-tensors' sparse-bitmask config, its fields only (BitmaskConfig): `global_sparsity` is
    the pruned fraction of the whole model's `model_weights` (its "average sparsity of the entire model"), else of
    the masked matrices; the fraction of the prunable matrices is ours (`sparsity_report`)."""
    report = sparsity_report(mask)
    pruned = report["prunable_weights"] - report["remaining_weights"]
    return {"format": BITMASK_FORMAT, "global_sparsity": pruned / (model_weights or report["prunable_weights"] or 1),
            "sparsity_structure": "unstructured", "targets": module_targets(mask), "ignore": []}


def mask_metadata(path: str | Path) -> dict[str, Any]:
    """A bitmask file's own metadata (`writer`, `keys`, `prunable`, `sparsity_config`); the older files' one
    `sparsity_config` entry read into that shape; {} for boolean files."""
    with safe_open(str(path), framework="pt") as f:
        stored = f.metadata() or {}
    entry, text = next(((k, stored[k]) for k in ("bert_tickets", "sparsity_config") if k in stored), ("", "{}"))
    try:
        config = json.loads(text)
    except ValueError:
        raise UserError(f"{path}: its {entry} metadata is not JSON") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: its {entry} metadata is not a mapping")
    if entry == "sparsity_config":  # bert-tickets-mask/2
        return {"writer": config.pop("writer", None), "prunable": config.get("targets"), "sparsity_config": config}
    return config


def load_mask(path: str | Path) -> Mask:
    """A mask file, bitmask or the older one-boolean-per-weight layout."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no mask at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise UserError(f"{path} is not a readable safetensors mask ({exc})") from None
    mask = _unpack(tensors, path) if any(name.endswith(".bitmask") for name in tensors) else tensors
    if not mask or any(m.dtype != torch.bool for m in mask.values()):
        raise UserError(f"{path} is not a mask: expected boolean tensors or bitmasks")
    return mask


MASK_DIMS = 4  # a prunable parameter is a matrix (at most a conv kernel): a deeper shape is no mask of ours
MASK_ENTRIES = 1 << 34  # kept bits per entry: far above any encoder matrix, far below what would exhaust memory


def _unpack(tensors: dict[str, torch.Tensor], path: Path) -> Mask:
    if stray := [key for key in tensors if not key.endswith((".bitmask", ".shape"))]:
        raise UserError(f"{path} is not a mask: {stray[0]} is neither a bitmask nor its shape")
    mask = {}
    for key, bits in tensors.items():
        if not key.endswith(".bitmask"):
            continue
        name = key.removesuffix(".bitmask")
        shape = tensors.get(f"{name}.shape")
        if shape is None or bits.dtype != torch.uint8:
            raise UserError(f"{path} is not a mask: {key} has no shape or is not uint8")
        dims = _checked_dims(shape, bits, f"{path} is not a mask: {name}.shape")
        columns = dims[-1] if dims else 1
        rows = np.unpackbits(bits.numpy(), axis=-1, count=columns, bitorder="little").astype(bool)
        mask[name] = torch.from_numpy(rows.reshape(dims))
    return mask


def _checked_dims(shape: torch.Tensor, bits: torch.Tensor, where: str) -> list[int]:
    """A `.shape` entry's sizes, checked before anything is allocated from them: a vector of at most `MASK_DIMS`
    positive integers, within `MASK_ENTRIES`, that the packed bits (rows of ceil(columns / 8) bytes) hold exactly."""
    if shape.dim() != 1 or shape.dtype not in (torch.int64, torch.int32) or len(shape) > MASK_DIMS:
        raise UserError(f"{where} must be a vector of at most {MASK_DIMS} integers, got a {shape.dim()}-D "
                        f"{str(shape.dtype).removeprefix('torch.')} tensor of {shape.numel()} values")
    dims = [int(d) for d in shape.tolist()]
    if any(d < 1 for d in dims) or math.prod(dims) > MASK_ENTRIES:
        raise UserError(f"{where} is {dims}: sizes must be positive and hold at most {MASK_ENTRIES} weights")
    rows, columns = (math.prod(dims[:-1]), dims[-1]) if dims else (1, 1)
    if tuple(bits.shape) != (rows, (columns + 7) // 8):
        raise UserError(f"{where} is {dims}, which its bitmask of shape {list(bits.shape)} does not hold")
    return dims


def fit_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> dict[str, tuple[nn.Parameter, torch.Tensor]]:
    """Pair each mask entry with the model's encoder parameter, or fail with a clear error if it doesn't fit."""
    params = dict(encoder_of(model).named_parameters())
    missing = [n for n in mask if n not in params and not OPTIONAL_KEYS.search(n)]
    if missing:
        raise UserError(f"mask does not fit this model: {len(missing)} masked weights are not in its encoder "
                        f"(first: {missing[0]!r}); was it found on another architecture?")
    pairs = {}
    for name, m in mask.items():
        if name not in params:
            continue
        if tuple(params[name].shape) != tuple(m.shape):
            raise UserError(f"mask does not fit this model: {name} has shape {tuple(params[name].shape)}, "
                            f"the mask {tuple(m.shape)}")
        pairs[name] = (params[name], m.to(params[name].device))
    return pairs


def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned weights of `model` in place."""
    with torch.no_grad():
        for param, m in fit_mask(model, mask).values():
            param.mul_(m)


class MaskEnforcer:
    """Keeps pruned weights exactly zero while training with AdamW: the weights are masked once, and the
    gradients before each optimizer step, so AdamW's moments, its update and its weight decay stay zero there;
    `count_revived` checks that nothing revived."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]):
        pairs = fit_mask(model, mask)
        self.names = list(pairs)
        self.params = [p for p, _ in pairs.values()]
        self.masks = [m.to(p.dtype) for p, m in pairs.values()]
        apply_mask(model, mask)

    def to(self, device: torch.device) -> None:
        self.masks = [m.to(device) for m in self.masks]

    def mask_gradients(self) -> None:
        pairs = [(p.grad, m) for p, m in zip(self.params, self.masks, strict=True) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    def count_revived(self) -> int:
        """How many pruned weights are not exactly zero (must be 0)."""
        return sum(int(((p.detach() != 0) & (m == 0)).sum()) for p, m in zip(self.params, self.masks, strict=True))
