"""A whole study on the stand-in Hub: one model repository per finished ticket, the report as a dataset
repository, and a collection listing them."""

import json
import subprocess
import sys

from fake_hub import FakeHub, hub_env
from huggingface_hub import ModelCard

from bert_tickets.cli import main
from bert_tickets.release.folder import MANIFEST


def tiny_study(model, glue_dir, tmp_path, capsys):
    spec = tmp_path / "release.yaml"
    spec.write_text(f"""
name: release-test
description: Two tasks, one sparsity, released as a collection.
data_dir: {glue_dir}
settings: {{model.name: {model}, training.max_steps: 2, training.batch_size: 8, data.max_length: 32}}
tasks: [rte, mrpc]
sparsities: [0.2]
baselines: [random]
seeds: 1
""")
    folder = tmp_path / "study"
    assert main(["study", str(spec), "--output-dir", str(folder)]) == 0
    capsys.readouterr()
    return folder


def test_push_a_study_dry_run_then_to_the_hub(tiny_bert, glue_dir, tmp_path, capsys):
    study = tiny_study(tiny_bert, glue_dir, tmp_path, capsys)
    report = study / "report"
    (report / "notes-private.txt").write_text("my private notes")  # a user's file beside the report's own
    secret = tmp_path / "secret.env"
    secret.write_text("HF_TOKEN=hf_not_for_the_hub")
    (report / "leak.csv").symlink_to(secret)  # a link, even with a table's name
    out = tmp_path / "release"
    assert main(["push", "--study", str(study), "--repo-prefix", "someone/tiny", "--dry-run", str(out)]) == 0
    assert "left out of the report's release" in (err := capsys.readouterr().err) and "leak.csv" in err
    released = {p.name for p in (out / "tiny-report").iterdir()}
    assert not {"notes-private.txt", "leak.csv", ".bert-tickets-report.json"} & released and "table2.csv" in released
    assert not any(b"hf_not_for_the_hub" in p.read_bytes() or b"my private notes" in p.read_bytes()
                   for p in out.rglob("*") if p.is_file())
    assert {p.name for p in out.iterdir()} == {"tiny-rte-20", "tiny-mrpc-20", "tiny-report", "collection.json",
                                               ".tiny-rte-20.lock", ".tiny-mrpc-20.lock", ".tiny-report.lock"}
    collection = json.loads((out / "collection.json").read_text())
    assert collection["title"] == "bert-tickets: release-test" and collection["namespace"] == "someone"
    assert [(i["item_id"], i["item_type"]) for i in collection["items"]] == [
        ("someone/tiny-rte-20", "model"), ("someone/tiny-mrpc-20", "model"), ("someone/tiny-report", "dataset")]
    report_card = ModelCard.load(out / "tiny-report" / "README.md")  # dataset card: the same YAML header
    configs = report_card.data.to_dict()["configs"]
    assert {c["config_name"] for c in configs} >= {"table2", "curves"}
    assert all((out / "tiny-report" / c["data_files"]).is_file() for c in configs)
    assert ModelCard.load(out / "tiny-rte-20" / "README.md").data.to_dict()["bert_tickets"]["task"] == "rte"

    with FakeHub() as hub:
        done = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "push", "--study", str(study),
                               "--repo-prefix", "someone/tiny"], env=hub_env(hub, tmp_path / "hf_home"),
                              capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    slug = next(iter(hub.collections))
    assert done.stdout.strip().splitlines()[-1] == f"{hub.url}/collections/{slug}"
    # every request, in order: per repository info, create, card check, preupload, commit; then the collection
    expected = []
    for kind, repo in (("models", "someone/tiny-rte-20"), ("models", "someone/tiny-mrpc-20"),
                       ("datasets", "someone/tiny-report")):
        expected += [f"GET /api/{kind}/{repo}", "POST /api/repos/create", "POST /api/validate-yaml",
                     f"POST /api/{kind}/{repo}/preupload/main", f"POST /api/{kind}/{repo}/commit/main"]
    expected += ["POST /api/collections"] + [f"POST /api/collections/{slug}/items"] * 3
    assert hub.paths() == expected
    assert all(r["authorization"] == "Bearer hf_SecretTokenValue123" for r in hub.requests)
    # the uploads are the dry run's folders, byte for byte
    for name, kind in (("tiny-rte-20", "model"), ("tiny-mrpc-20", "model"), ("tiny-report", "dataset")):
        uploaded = hub.repos[f"{kind}:someone/{name}"]["files"]["main"]
        assert uploaded == {p.name: p.read_bytes() for p in (out / name).iterdir() if p.name != MANIFEST}, name
    items = hub.collections[slug]["items"]
    assert [(i["id"], i["type"]) for i in items] == [(i["item_id"], i["item_type"]) for i in collection["items"]]
    assert not any(r["private"] for r in hub.repos.values())
    # a second dry run replaces what the first wrote and nothing else
    (out / "tiny-report" / "notes.md").write_text("mine")
    (out / "mine.txt").write_text("mine")
    assert main(["push", "--study", str(study), "--repo-prefix", "someone/tiny", "--dry-run", str(out)]) == 0
    assert (out / "tiny-report" / "notes.md").read_text() == "mine" and (out / "mine.txt").read_text() == "mine"


def test_push_study_needs_its_prefix_and_a_finished_ticket(tmp_path, capsys):
    assert main(["push", "--study", str(tmp_path), "--repo-id", "a/b"]) == 2
    assert "--study takes --repo-prefix" in capsys.readouterr().err
    assert main(["push", "--study", str(tmp_path), "--repo-prefix", "a/b"]) == 2
    assert "not a study folder" in capsys.readouterr().err
