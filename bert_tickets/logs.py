"""What the toolkit says on stderr, through one logger, and how it quiets other libraries for its own calls only.

Everything bert-tickets says goes through the `bert_tickets` logger: a caller quiets it with
`logging.getLogger("bert_tickets").setLevel(logging.WARNING)` or raises it to DEBUG. Like transformers' own library
logger it has its handler and does not propagate, so a root `basicConfig` does not print each line twice; the
handler writes through tqdm, so a progress bar on the terminal is cleared first and redrawn below the line.

transformers and evaluate are quieted only around our calls (`quiet`): the caller's verbosity and progress-bar
switches are put back as they were, so importing or running the toolkit changes nothing in the caller's process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

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
def _quiet_transformers() -> Iterator[None]:
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as tf_logging

    def set_hub_bars(off: bool) -> None:  # transformers' bar switch flips huggingface_hub's too: put it back after
        hub_utils.disable_progress_bars() if off else hub_utils.enable_progress_bars()

    level, bars, hub_off = (tf_logging.get_verbosity(), tf_logging.is_progress_bar_enabled(),
                            hub_utils.are_progress_bars_disabled())
    tf_logging.set_verbosity_error()  # "newly initialized head" is expected here
    tf_logging.disable_progress_bar()  # no "Loading weights" bar per model built (a run builds many)
    set_hub_bars(hub_off)  # a Hub download still shows its bar, where the caller shows them
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)
        tf_logging.enable_progress_bar() if bars else tf_logging.disable_progress_bar()
        set_hub_bars(hub_off)


@contextmanager
def _quiet_evaluate() -> Iterator[None]:
    import evaluate.utils.logging as ev_logging

    level, bars = ev_logging.get_verbosity(), ev_logging.is_progress_bar_enabled()
    ev_logging.set_verbosity_error()
    ev_logging.disable_progress_bar()  # one compute per evaluation: a bar would only add noise
    try:
        yield
    finally:
        ev_logging.set_verbosity(level)
        ev_logging.enable_progress_bar() if bars else ev_logging.disable_progress_bar()


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    import datasets

    level, bars = datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()  # "Generating train split" for a file of a few examples
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        datasets.enable_progress_bars() if bars else datasets.disable_progress_bars()


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
