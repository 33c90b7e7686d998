"""Which autocast a run uses, decided from its settings and the device alone (never the CPU's flags), before its
run hash: one module that imports nothing of the engine, so the config's hash can ask it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from bert_tickets.config import TrainingConfig

NATIVE_BF16_ENV = "BERT_TICKETS_NATIVE_BF16"  # 1 or 0: what native_bf16() answers (tests take both paths)


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively: a recent GPU, or a CPU with AVX-512 BF16 or AMX. Only the
    benchmarks ask on a CPU: the CPU default precision is fp32 whatever the flags (`resolved_precision`)."""
    if (forced := os.environ.get(NATIVE_BF16_ENV)) in ("0", "1"):
        return forced == "1"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolved_precision(training: TrainingConfig) -> str:
    """The autocast a run uses, decided before its hash: an explicit setting as it is; "auto" is what `accelerate
    launch --mixed_precision` (or accelerate's config) gave, else bf16 on a GPU that supports it, else fp32 ("no").
    A CPU is fp32 by default, as in Hugging Face's Trainer, so a run's numbers never depend on the host's CPU flags
    (bf16 on a CPU is opt-in: `--mixed-precision bf16`)."""
    if training.mixed_precision != "auto":
        return training.mixed_precision
    if launched := os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return launched
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
