"""What the toolkit says on stderr, through one logger, and how it quiets other libraries for its own calls only.

Everything bert-tickets says goes through the `bert_tickets` logger: a caller quiets it with
`logging.getLogger("bert_tickets").setLevel(logging.WARNING)` or raises it to DEBUG. Like transformers' own library
logger it has its handler and does not propagate, so a root `basicConfig` does not print each line twice; the
handler writes through tqdm, so a progress bar on the terminal is cleared first and redrawn below the line.

transformers, evaluate and datasets are quieted only around our calls (`quiet`): the caller's verbosity and progress-bar
switches are put back as they were, so importing or running the toolkit changes nothing in the caller's process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

from tqdm import tqdm

LOGGER = logging.getLogger("bert_tickets")


class _TqdmHandler(logging.Handler):
    """One line per record on the stderr of the moment (pytest's capture swaps it), above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(f"[bert-tickets] {self.format(record)}", file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # logging must never take the run down (a closed stream at exit)
            self.handleError(record)


if not LOGGER.handlers:
    LOGGER.addHandler(_TqdmHandler())
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


@contextmanager
def _quiet_library(library_logging: Any) -> Iterator[None]:
    """One library's logging module (transformers', evaluate's and datasets' share this API, from transformers'
    design) at error level with its bars off; its settings put back after."""
    level, bars = library_logging.get_verbosity(), library_logging.is_progress_bar_enabled()
    library_logging.set_verbosity_error()
    library_logging.disable_progress_bar()
    try:
        yield
    finally:
        library_logging.set_verbosity(level)
        library_logging.enable_progress_bar() if bars else library_logging.disable_progress_bar()


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """"newly initialized head" is expected here, and no "Loading weights" bar per model built (a run builds many);
    a Hub download still shows its bar where the caller shows them: transformers' bar switch flips
    huggingface_hub's too, so theirs is put back, inside the block and after it."""
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as tf_logging

    def set_hub_bars(off: bool) -> None:
        hub_utils.disable_progress_bars() if off else hub_utils.enable_progress_bars()

    hub_off = hub_utils.are_progress_bars_disabled()
    try:
        with _quiet_library(tf_logging):
            set_hub_bars(hub_off)
            yield
    finally:
        set_hub_bars(hub_off)


def _quiet_evaluate() -> AbstractContextManager[None]:
    import evaluate.utils.logging as ev_logging

    return _quiet_library(ev_logging)  # one compute per evaluation: a bar would only add noise


def _quiet_datasets() -> AbstractContextManager[None]:
    import datasets.utils.logging as ds_logging

    return _quiet_library(ds_logging)  # "Generating train split" for a file of a few examples


QUIETERS: dict[str, Callable[[], AbstractContextManager[None]]] = {
    "transformers": _quiet_transformers, "evaluate": _quiet_evaluate, "datasets": _quiet_datasets}


@contextmanager
def quiet(*libraries: str) -> Iterator[None]:
    """The named libraries ("transformers", "evaluate", "datasets") at error level with their bars off inside the
    block; the caller's settings put back after."""
    with ExitStack() as stack:
        for library in libraries:
            stack.enter_context(QUIETERS[library]())
        yield
