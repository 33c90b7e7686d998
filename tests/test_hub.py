import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub, hub_env
from huggingface_hub import ModelCard
from transformers import AutoModel

from bert_tickets import Ticket
from bert_tickets.cli import main
from bert_tickets.engine.masks import prunable_parameters
from bert_tickets.release.folder import MANIFEST


def make_ticket(model: str, glue_dir: Path, out: Path, capsys) -> str:
    args = ["find", "--task", "mrpc", "--sparsity", "0.3", "--method", "magnitude", "--model", model, "--data-dir",
            str(glue_dir), "--output-dir", str(out), "--max-steps", "2", "--batch-size", "8", "--max-length", "32"]
    assert main(args) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_dry_run_folder_loads_in_plain_transformers(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = Ticket.load(make_ticket(tiny_bert, glue_dir, tmp_path, capsys))
    out = tmp_path / "release"
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/tiny-mrpc-30", "--dry-run", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert {"config.json", "model.safetensors", "mask.safetensors", "ticket.json", "README.md",
            "tokenizer.json"} <= {p.name for p in out.iterdir()}
    model = AutoModel.from_pretrained(out)  # an encoder: a ticket has no task head to be random under a score
    assert type(model).__name__ == "BertModel"
    params = prunable_parameters(model, ticket.info["prunable"])
    for name, keep in ticket.mask.items():  # the zero pattern is the mask, exactly
        assert torch.equal(params[name] != 0, keep), name
    card = ModelCard.load(out / "README.md")
    assert not card.data.eval_results and card.data.pipeline_tag == "feature-extraction"  # no score of its own
    accuracy = ticket.info["metrics"]["ticket"]["accuracy"]["mean"]
    assert f"| accuracy | {100 * accuracy:.2f} % (n = 1) |" in card.text  # the evidence, in the body
    assert "evidence, not this checkpoint's score" in card.text and "| random pruning |" in card.text
    assert card.data.datasets == ["nyu-mll/glue"] and "lottery-ticket" in card.data.tags
    assert card.data.base_model is None  # a local checkpoint folder is not a Hub id
    meta = card.data.to_dict()["bert_tickets"]
    assert meta["sparsity"] == ticket.sparsity and meta["mask"]["format"] == "sparse-bitmask"
    assert meta["mask_bytes"] < meta["mask_bytes_one_byte_per_weight"]  # a bit a weight, plus the header
    assert "bert-tickets find --task mrpc --sparsity 0.3" in card.text and "KeepMask" in card.text
    released = json.loads((out / "ticket.json").read_text())
    assert "run_dir" not in released and str(tmp_path) not in json.dumps(released)
    # a second export replaces the first only once it is complete
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/tiny-mrpc-30", "--dry-run", str(out)]) == 0
    assert [p.name for p in tmp_path.glob(".release*")] == [".release.lock"]  # its lock beside it, no temp folder


def test_push_without_network_is_one_line_and_never_shows_the_token(tiny_bert, glue_dir, tmp_path, capsys,
                                                                     monkeypatch):
    ticket = make_ticket(tiny_bert, glue_dir, tmp_path, capsys)
    monkeypatch.setenv("HF_TOKEN", "hf_SecretTokenValue123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/tiny"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "could not upload to the Hub" in lines[0] and "--dry-run" in lines[0]
    assert "SecretTokenValue" not in captured.err + captured.out
    assert main(["push", "--ticket", ticket, "--repo-id", "not a repo"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err


def push(ticket: str, hub: FakeHub, home: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bert_tickets.cli", "push", "--ticket", ticket, *flags],
                          env=hub_env(hub, home), capture_output=True, text=True, timeout=300)


def test_push_uploads_through_the_hub_api(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = make_ticket(tiny_bert, glue_dir, tmp_path, capsys)
    dry_run = tmp_path / "release"
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/tiny", "--dry-run", str(dry_run)]) == 0
    with FakeHub() as hub:
        done = push(ticket, hub, tmp_path / "hf_home", "--repo-id", "someone/tiny", "--private")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"{hub.url}/someone/tiny"
    assert "SecretTokenValue" not in done.stdout + done.stderr
    assert hub.paths() == ["GET /api/models/someone/tiny", "POST /api/repos/create", "POST /api/validate-yaml",
                           "POST /api/models/someone/tiny/preupload/main", "POST /api/models/someone/tiny/commit/main"]
    create = next(r for r in hub.requests if r["path"] == "/api/repos/create")
    card_check = next(r for r in hub.requests if r["path"] == "/api/validate-yaml")
    commit = next(r for r in hub.requests if "/commit/" in r["path"])
    assert json.loads(card_check["body"])["content"] == (dry_run / "README.md").read_text()
    request = json.loads(create["body"])
    assert (request["name"], request["organization"]) == ("tiny", "someone")
    assert request.get("visibility") == "private" or request.get("private") is True  # huggingface_hub >= 1 / < 1
    assert all(r.get("authorization") == "Bearer hf_SecretTokenValue123" for r in hub.requests)
    header = json.loads(commit["body"].splitlines()[0])
    assert header["value"]["summary"] == "Upload lottery ticket (bert-tickets)"
    # what reached the Hub is, byte for byte, the folder that --dry-run writes and verifies
    uploaded = hub.repos["model:someone/tiny"]["files"]["main"]
    assert uploaded == {p.name: p.read_bytes() for p in dry_run.iterdir() if p.name != MANIFEST}  # never uploaded
    assert {"model.safetensors", "mask.safetensors", "README.md", "ticket.json"} <= set(uploaded)
    assert hub.repos["model:someone/tiny"]["private"]


def test_private_into_an_existing_public_repo_is_refused(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = make_ticket(tiny_bert, glue_dir, tmp_path, capsys)
    with FakeHub({"model:someone/public": False}) as hub:
        done = push(ticket, hub, tmp_path / "hf_home", "--repo-id", "someone/public", "--private")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "someone/public already exists and is public" in lines[0], done.stderr
    assert hub.paths() == ["GET /api/models/someone/public"]  # nothing created, nothing uploaded
    assert hub.repos["model:someone/public"]["files"] == {}


def test_updates_go_to_a_branch_or_a_pull_request(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = make_ticket(tiny_bert, glue_dir, tmp_path, capsys)
    with FakeHub({"model:someone/tiny": False}) as hub:
        branch = push(ticket, hub, tmp_path / "hf_home", "--repo-id", "someone/tiny", "--revision", "v2")
        pr = push(ticket, hub, tmp_path / "hf_home", "--repo-id", "someone/tiny", "--create-pr")
    assert branch.returncode == 0 and pr.returncode == 0, branch.stderr + pr.stderr
    assert "POST /api/models/someone/tiny/branch/v2" in hub.paths()
    assert "POST /api/models/someone/tiny/commit/v2" in hub.paths()
    assert "POST /api/repos/create" not in hub.paths()  # it exists: its settings are left alone
    files = hub.repos["model:someone/tiny"]["files"]
    assert set(files) == {"v2", "refs/pr/1"} and "main" not in files  # main untouched by either
    assert pr.stdout.strip().splitlines()[-1] == f"{hub.url}/someone/tiny/discussions/1"
    opened = "POST /api/models/someone/tiny/discussions" in hub.paths()  # huggingface_hub >= 1: opened, then filled
    assert opened or any(r["query"] == "create_pr=1" for r in hub.requests)  # < 1.0: a commit that opens it


def test_a_pull_request_against_a_branch_is_refused(tmp_path, capsys):
    args = ["push", "--ticket", str(tmp_path), "--repo-id", "a/b", "--create-pr", "--revision", "v2"]
    assert main(args) == 2
    assert "--create-pr opens a pull request against main" in capsys.readouterr().err


@pytest.mark.parametrize("repo_id", ["x--y/z", "a/x..y", "a/name.git", "a/b/c", "not a repo", "-lead/x"])
def test_repo_ids_the_hub_rejects_are_refused_before_any_work(repo_id, tmp_path, capsys):
    assert main(["push", "--ticket", str(tmp_path), f"--repo-id={repo_id}", "--dry-run", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and repr(repo_id) in err[0]
    assert not (tmp_path / "o").exists()


def test_no_byte_of_a_release_names_the_machine(tiny_bert, tmp_path, capsys):
    import shutil

    from conftest import write_glue

    home = tmp_path / "home" / "jdoe-7f3a"  # what cluster paths hold: a user name
    model = home / "models" / "tiny-bert"
    shutil.copytree(tiny_bert, model)
    glue = write_glue(home / "data" / "glue_data")
    assert main(["find", "--task", "mrpc", "--sparsity", "0.3", "--model", str(model), "--data-dir", str(glue),
                 "--output-dir", str(home / "runs"), "--max-steps", "2", "--batch-size", "8", "--max-length", "32",
                 "--seeds", "2", "--set", "training.keep_finetuned=true"]) == 0
    ticket = capsys.readouterr().out.strip().splitlines()[-1]
    assert "jdoe-7f3a" in (Path(ticket) / "ticket.json").read_text()  # the run's own record may name it
    for flags in ([], ["--fine-tuned"]):
        out = tmp_path / f"release{len(flags)}"
        assert main(["push", "--ticket", ticket, "--repo-id", "someone/x", *flags, "--dry-run", str(out)]) == 0
        for file in out.rglob("*"):
            if file.is_file():
                assert b"jdoe-7f3a" not in file.read_bytes() and str(tmp_path).encode() not in file.read_bytes(), file
