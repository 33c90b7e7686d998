"""One flat update for a pack: its parameters, gradients and AdamW state in member-major flat buffers.

A packed model holds K members' weights stacked in ~200 tensors; masking, per-member gradient clipping and AdamW
over them is hundreds of small kernels a step, which on a GPU cost more host time than the step's arithmetic. Here
every parameter becomes a view of one of two buffers of shape (K, N): weight-decayed matrices and the rest (the
BERT recipe's two groups). Row k is member k's whole parameter vector, so

- masking is one multiply of the decayed gradients by a (K, N) mask,
- member k's global gradient norm is the norm of row k (both buffers), and its clip one multiply by a (K, 1) column,
- AdamW is torch's over two tensors (fused on CUDA) instead of ~200,

and the update is the per-tensor one's within fp32 rounding (tests/test_packed.py). Gradients land in the flat
buffers directly: each parameter's `.grad` is a view of them, which autograd accumulates into in place.

Our own code rather than `torch.distributed`'s flat parameters (FSDP): those shard across processes and flatten
member-agnostically, while the per-member norm needs each member's elements in one row.
"""

from __future__ import annotations

import torch
from torch import nn

from bert_tickets.config import TrainingConfig


class FlatGroup:
    """Parameters of one weight-decay group as views of a (K, N) buffer, with their gradient buffer."""

    def __init__(self, named: list[tuple[str, nn.Parameter]], k: int, device: torch.device):
        self.names = [name for name, _ in named]
        sizes = [p[0].numel() for _, p in named]
        dtype = named[0][1].dtype if named else torch.float32
        self.data = torch.empty(k, sum(sizes), dtype=dtype, device=device)
        self.grad = torch.zeros_like(self.data)
        self.offsets: dict[str, tuple[int, int]] = {}
        self.views: list[nn.Parameter] = []
        start = 0
        for (name, param), size in zip(named, sizes, strict=True):
            self.offsets[name] = (start, start + size)
            self.data[:, start:start + size] = param.detach().reshape(k, -1)
            view = nn.Parameter(self.data[:, start:start + size].view(param.shape))
            view.grad = self.grad[:, start:start + size].view(param.shape)  # autograd adds into it in place
            self.views.append(view)
            start += size

    def segment(self, buffer: torch.Tensor, name: str) -> torch.Tensor:
        start, end = self.offsets[name]
        return buffer[:, start:end]


class FlatUpdate:
    """Masked, per-member clipped AdamW over a pack's parameters, re-seated as views of flat buffers."""

    def __init__(self, packed: nn.Module, k: int, masks: dict[str, torch.Tensor], training: TrainingConfig,
                 tensor_lr: bool = False):
        device = next(packed.parameters()).device
        named = list(packed.named_parameters())
        self.k, self.max_grad_norm = k, training.max_grad_norm
        self.decay = FlatGroup([(n, p) for n, p in named if p.ndim > 2], k, device)  # per member: matrices
        self.rest = FlatGroup([(n, p) for n, p in named if p.ndim <= 2], k, device)
        for group in (self.decay, self.rest):
            for name, view in zip(group.names, group.views, strict=True):
                parent, _, attribute = name.rpartition(".")
                setattr(packed.get_submodule(parent) if parent else packed, attribute, view)
        self.mask = self._flat_mask(masks)
        flats = [nn.Parameter(g.data, requires_grad=False) for g in (self.decay, self.rest)]  # aliases, leaves
        for flat, group in zip(flats, (self.decay, self.rest), strict=True):
            flat.grad = group.grad
        groups = [{"params": [flats[0]], "weight_decay": training.weight_decay},
                  {"params": [flats[1]], "weight_decay": 0.0}]
        # a tensor learning rate, updated in place by the schedule, for a captured or compiled step
        # (`step_graph`); capturable keeps AdamW's step counts on the device, as a CUDA graph needs
        lr: float | torch.Tensor = torch.tensor(training.learning_rate, device=device) if tensor_lr \
            else training.learning_rate
        cuda = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=lr, fused=cuda, capturable=cuda and tensor_lr)
        # AdamW's own step, before a learning-rate schedule wraps it in a counter torch.compile will not trace into
        self._adamw_step = self.optimizer.step

    def _flat_mask(self, masks: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(K, N) over the decayed buffer: each member's mask where it has one, ones elsewhere; None unmasked."""
        if not masks:
            return None
        if stray := sorted(set(masks) - set(self.decay.names)):
            raise ValueError(f"masks on parameters outside the weight matrices: {stray[0]}")
        flat = torch.ones_like(self.decay.data)
        for name, mask in masks.items():
            self.decay.segment(flat, name).copy_(mask.reshape(self.k, -1))
        return flat

    def revived(self) -> list[int]:
        """Per member: pruned weights that are not exactly zero (must be 0)."""
        if self.mask is None:
            return [0] * self.k
        return ((self.decay.data != 0) & (self.mask == 0)).sum(dim=1).tolist()

    def step(self) -> None:
        """Mask the gradients, clip each member's global norm (over the masked gradients), step, zero them."""
        if self.mask is not None:
            self.decay.grad.mul_(self.mask)
        if self.max_grad_norm > 0:
            squares = [torch.linalg.vector_norm(g.grad, dim=1) ** 2 for g in (self.decay, self.rest)]
            norm = torch.sqrt(squares[0] + squares[1])
            # torch.nn.utils.clip_grad_norm_'s coefficient, one per member
            coef = (self.max_grad_norm / (norm + 1e-6)).clamp(max=1.0).unsqueeze(1).to(self.decay.grad.dtype)
            self.decay.grad.mul_(coef)
            self.rest.grad.mul_(coef)
        self._adamw_step()
        self.decay.grad.zero_()
        self.rest.grad.zero_()
