"""How a pack's training step is launched (`training.pack_step`): one strategy class each, one registry line.

- `eager`: every operation launched from Python, as written (hundreds of launches a step).
- `compiled`: `torch.compile` of the forward with the members' losses (one graph; its backward is the graph's own,
  made by AOTAutograd) and of the flat update (masking, per-member clip, AdamW: one more graph), with the learning
  rate a tensor, so the schedule never recompiles it.
- `graph`: the whole step (forward, backward, the padding rows' gradients, masking, clipping, AdamW, the dropout
  counter) captured once per batch shape as a CUDA graph and replayed: one launch from the host a step. The first
  step of each shape runs eagerly on a side stream (it creates what capture cannot: AdamW's state, cuBLAS's
  workspace, the dropout positions of that shape), the next captures it. CUDA only; elsewhere, or where capture
  fails, the pack steps eagerly from there on, said in one log line.

Our own capture (PyTorch's "whole-network capture" recipe, `torch.cuda.graph`) rather than
`torch.compile(mode="reduce-overhead")`: `backward()` and the optimizer inside one compiled function break its
graph, so reduce-overhead would capture the step in pieces with host work between them.

Each strategy is called with a step's inputs and returns the members' losses (K,), detached; the caller advances
the schedule and keeps the running sums.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from bert_tickets.ranks import log

Inputs = dict[str, torch.Tensor]


class PackStep(Protocol):
    """What a strategy steps: the pack's forward-and-losses, and the rest of its step after backward."""

    def forward_losses(self, inputs: Inputs, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor: ...

    def backward(self, losses: torch.Tensor) -> None: ...

    def after_backward(self) -> None: ...


class EagerStep:
    name = "eager"

    def __init__(self, pack: PackStep, device: torch.device):
        self.pack, self.device = pack, device

    def __call__(self, inputs: Inputs, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.step(inputs, labels, real)

    @property
    def ran(self) -> str:
        """How the steps were launched, for the members' records."""
        return self.name

    def step(self, inputs: Inputs, labels: torch.Tensor, real: torch.Tensor,
             forward: Callable[..., torch.Tensor] | None = None, update: Callable[[], None] | None = None
             ) -> torch.Tensor:
        losses = (forward or self.pack.forward_losses)(inputs, labels, real)
        self.pack.backward(losses)
        (update or self.pack.after_backward)()
        return losses.detach()


class CompiledStep(EagerStep):
    name = "compiled"

    def __init__(self, pack: PackStep, device: torch.device):
        super().__init__(pack, device)
        self.forward = torch.compile(pack.forward_losses, fullgraph=True)
        self.update = torch.compile(pack.after_backward)

    def __call__(self, inputs: Inputs, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.step(inputs, labels, real, self.forward, self.update)


class GraphStep(EagerStep):
    """One CUDA graph per batch shape, replayed; static input buffers the step's batch is copied into."""

    name = "graph"

    def __init__(self, pack: PackStep, device: torch.device):
        super().__init__(pack, device)
        self.graphs: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, Inputs, torch.Tensor]] = {}
        self.warmed: set[tuple[Any, ...]] = set()
        self.pool = torch.cuda.graph_pool_handle()  # the shapes' graphs share one memory pool (run one at a time)
        self.failed = False

    @property
    def ran(self) -> str:
        return "eager" if self.failed else self.name  # capture fails before any replay: every step was eager

    def __call__(self, inputs: Inputs, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.step(inputs, labels, real)
        batch = {**inputs, "labels": labels, "real": real}
        shape = tuple((name, tuple(t.shape)) for name, t in sorted(batch.items()))
        if shape not in self.warmed:  # this shape's first step: eager, on a side stream (capture's warm-up)
            self.warmed.add(shape)
            return self._on_side_stream(inputs, labels, real)
        if shape not in self.graphs:
            try:
                self.graphs[shape] = self._capture(batch)
            except Exception as error:  # noqa: BLE001 - any failure to capture leaves the pack eager, not broken
                self.failed = True
                log(f"pack step: CUDA graph capture failed ({type(error).__name__}: {error}); stepping eagerly")
                return self.step(inputs, labels, real)
        graph, static, losses = self.graphs[shape]
        for name, tensor in batch.items():
            static[name].copy_(tensor, non_blocking=True)
        graph.replay()
        return losses  # read before the next replay overwrites it (the caller adds it to its sums at once)

    def _on_side_stream(self, inputs: Inputs, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            losses = self.step(inputs, labels, real)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return losses

    def _capture(self, batch: Inputs) -> tuple[torch.cuda.CUDAGraph, Inputs, torch.Tensor]:
        """Record the step on static copies of this batch (recording runs nothing: the state is untouched)."""
        static = {name: tensor.clone() for name, tensor in batch.items()}
        inputs = {name: t for name, t in static.items() if name not in ("labels", "real")}
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        with torch.cuda.graph(graph, pool=self.pool):
            losses = self.step(inputs, static["labels"], static["real"])
        return graph, static, losses


STEP_STRATEGIES: dict[str, type[EagerStep]] = {"eager": EagerStep, "compiled": CompiledStep, "graph": GraphStep}


def make_step(mode: str, pack: PackStep, device: torch.device) -> EagerStep:
    """The strategy `mode` names, or eager where it cannot run here (a CUDA graph off CUDA), said once."""
    if mode == "graph" and device.type != "cuda":
        log(f"pack step: CUDA graphs need a CUDA device, not {device.type}; stepping eagerly")
        mode = "eager"
    return STEP_STRATEGIES[mode](pack, device)


def needs_tensor_learning_rate(mode: str, device: torch.device) -> bool:
    """A graph replays the learning rate it read at capture unless it is a tensor updated in place; a compiled
    update would recompile at every new float."""
    return mode == "compiled" or (mode == "graph" and device.type == "cuda")
