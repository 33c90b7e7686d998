"""Pinned Hub revisions: passed to every load, recorded with the commit they resolved to."""

import json
from pathlib import Path

import pytest
import transformers
from transformers import AutoModelForSequenceClassification

from bert_tickets import Ticket, provenance
from bert_tickets.cli import main
from bert_tickets.config import load_config
from bert_tickets.engine.modeling import load_pretrained
from bert_tickets.errors import UserError
from bert_tickets.release import hub
from bert_tickets.tasks import get_task

COMMIT = "f" * 40


@pytest.fixture
def hub_model(tiny_bert, monkeypatch):
    """'someone/bert' on a stand-in Hub: every load is recorded with its revision and answers with tiny_bert."""
    loads = []
    real_tokenizer = transformers.AutoTokenizer.from_pretrained
    real_model = AutoModelForSequenceClassification.from_pretrained

    def tokenizer(path, revision=None, **kwargs):
        loads.append(("tokenizer", path, revision))
        return real_tokenizer(tiny_bert, **kwargs)

    def model(path, revision=None, **kwargs):
        loads.append(("model", path, revision))
        loaded = real_model(tiny_bert, **kwargs)
        loaded[0].config._commit_hash = COMMIT  # what from_pretrained records for a Hub download
        return loaded

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", model)
    monkeypatch.setattr(hub, "base_model_license", lambda name: "apache-2.0")
    return loads


def test_model_revision_reaches_every_load_and_is_recorded(hub_model, glue_dir, tmp_path, capsys):
    args = ["find", "--task", "rte", "--sparsity", "0.2", "--method", "magnitude", "--model", "someone/bert",
            "--set", "model.revision=v1.0", "--data-dir", str(glue_dir), "--output-dir", str(tmp_path),
            "--max-steps", "2", "--batch-size", "8", "--max-length", "32"]
    assert main(args) == 0
    ticket = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert hub_model and all(revision == "v1.0" for _, _, revision in hub_model)
    assert {kind for kind, _, _ in hub_model} == {"tokenizer", "model"}
    assert ticket.info["model_source"] == {"model": "someone/bert", "revision": "v1.0", "commit": COMMIT}
    run_config = json.loads((Path(ticket.info["run_dir"]) / "config.json").read_text())
    assert run_config["config"]["model"]["revision"] == "v1.0"
    card = hub.ticket_card(ticket, "someone/ticket")
    assert card.data.to_dict()["bert_tickets"]["model_source"]["commit"] == COMMIT
    assert f"`someone/bert` at revision `v1.0`, commit `{COMMIT}`" in card.text
    # the export loads the same revision
    hub_model.clear()
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/ticket", "--dry-run",
                 str(tmp_path / "out")]) == 0
    assert hub_model and all(revision == "v1.0" for _, _, revision in hub_model)
    exported = json.loads((tmp_path / "out" / "config.json").read_text())["bert_tickets"]["base_model"]
    assert exported == {"model": "someone/bert", "revision": "v1.0", "commit": COMMIT}


def test_data_revision_is_recorded_with_its_commit(monkeypatch):
    monkeypatch.setattr(provenance, "hub_commit", lambda repo, kind, revision: f"{kind}:{repo}@{revision}")
    data = load_config(None, {"data.task": "mnli", "data.revision": "refs/convert/parquet"}).data
    assert provenance.data_source(get_task("mnli"), data) == {
        "hub_dataset": "nyu-mll/glue", "config": "mnli", "revision": "refs/convert/parquet",
        "commit": "dataset:nyu-mll/glue@refs/convert/parquet"}


def test_a_revision_for_a_local_folder_is_an_error(tiny_bert):
    with pytest.raises(UserError, match="model.revision 'v1' is for Hub models"):
        load_pretrained(tiny_bert, get_task("rte"), revision="v1")


def test_offline_the_requested_revision_stands_alone(monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    assert provenance.hub_commit("nyu-mll/glue", "dataset", "main") is None


def test_hub_download_bars_stay_on_while_weight_loading_is_quiet(tiny_bert, monkeypatch):
    import huggingface_hub.utils as hub_utils

    during = []
    real_model = AutoModelForSequenceClassification.from_pretrained

    def model(*args, **kwargs):
        during.append((hub_utils.are_progress_bars_disabled(), transformers.utils.logging.is_progress_bar_enabled()))
        return real_model(*args, **kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", model)
    hub_utils.enable_progress_bars()
    load_pretrained(tiny_bert, get_task("rte"))
    # a 440 MB bert-base download shows its progress; no "Loading weights" bar per model built
    assert during[-1] == (False, False)
    assert not hub_utils.are_progress_bars_disabled() and transformers.utils.logging.is_progress_bar_enabled()
    hub_utils.disable_progress_bars()  # a user's choice is kept too
    load_pretrained(tiny_bert, get_task("rte"))
    assert during[-1] == (True, False) and hub_utils.are_progress_bars_disabled()
    hub_utils.enable_progress_bars()
