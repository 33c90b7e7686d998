"""Library etiquette: the toolkit changes no logging or progress setting of the caller's process, and everything it
says on stderr goes through the `bert_tickets` logger, which a caller can quiet."""

import logging

import datasets
import evaluate
import huggingface_hub.utils as hub_utils
import pytest
import transformers
from test_cli import tiny_args

from bert_tickets import logs
from bert_tickets.cli import main


def library_settings() -> dict[str, object]:
    return {"transformers level": transformers.logging.get_verbosity(),
            "transformers bars": transformers.utils.logging.is_progress_bar_enabled(),
            "hub bars off": hub_utils.are_progress_bars_disabled(),
            "evaluate level": evaluate.logging.get_verbosity(),
            "evaluate bars": evaluate.utils.logging.is_progress_bar_enabled(),
            "datasets level": datasets.logging.get_verbosity(),
            "datasets bars": datasets.utils.logging.is_progress_bar_enabled()}


@pytest.mark.parametrize("chatty", [True, False])
def test_a_find_leaves_the_callers_logging_and_progress_settings_as_they_were(tiny_bert, glue_dir, tmp_path,
                                                                              chatty):
    """Both ways round, so a setting the toolkit forced either way would show: all on at INFO, then all off."""
    for library in (transformers, evaluate, datasets):
        library.logging.set_verbosity(logging.INFO if chatty else logging.CRITICAL)
        (library.utils.logging.enable_progress_bar if chatty else library.utils.logging.disable_progress_bar)()
    (hub_utils.enable_progress_bars if chatty else hub_utils.disable_progress_bars)()
    before = library_settings()
    try:
        assert main(tiny_args(tiny_bert, glue_dir, tmp_path, "--method", "magnitude")) == 0
        assert library_settings() == before
    finally:
        for library in (transformers, evaluate, datasets):
            library.logging.set_verbosity(logging.WARNING)
            library.utils.logging.enable_progress_bar()
        hub_utils.enable_progress_bars()


def test_quiet_scopes_transformers_and_keeps_hub_download_bars_as_the_caller_set_them():
    for hub_off in (False, True):
        (hub_utils.disable_progress_bars if hub_off else hub_utils.enable_progress_bars)()
        transformers.utils.logging.enable_progress_bar()
        (hub_utils.disable_progress_bars if hub_off else hub_utils.enable_progress_bars)()
        with logs.quiet("transformers", "evaluate"):
            assert transformers.logging.get_verbosity() == logging.ERROR
            assert not transformers.utils.logging.is_progress_bar_enabled()  # no "Loading weights" bar per build
            assert hub_utils.are_progress_bars_disabled() == hub_off  # a 440 MB download shows its bar, if wanted
            assert not evaluate.utils.logging.is_progress_bar_enabled()
        assert transformers.utils.logging.is_progress_bar_enabled()
        assert hub_utils.are_progress_bars_disabled() == hub_off
    hub_utils.enable_progress_bars()


def test_the_toolkit_speaks_through_its_logger_which_a_caller_can_quiet(tiny_bert, glue_dir, tmp_path, capsys):
    assert main(tiny_args(tiny_bert, glue_dir, tmp_path / "a", "--method", "magnitude")) == 0
    assert "[bert-tickets]" in capsys.readouterr().err
    logger = logging.getLogger("bert_tickets")
    logger.setLevel(logging.WARNING)
    try:
        assert main(tiny_args(tiny_bert, glue_dir, tmp_path / "b", "--method", "magnitude")) == 0
    finally:
        logger.setLevel(logging.INFO)
    assert "[bert-tickets]" not in capsys.readouterr().err
