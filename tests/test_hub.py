import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from bert_tickets import Ticket
from bert_tickets.cli import main
from bert_tickets.masks import prunable_parameters


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
    model = AutoModelForSequenceClassification.from_pretrained(out)
    params = prunable_parameters(model, ticket.info["prunable"])
    for name, keep in ticket.mask.items():  # the zero pattern is the mask, exactly
        assert torch.equal(params[name] != 0, keep), name
    card = ModelCard.load(out / "README.md")
    results = {(r.metric_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert set(results) == {("accuracy", "accuracy (ticket)"), ("f1", "f1 (ticket)"),
                            ("accuracy", "accuracy (dense)"), ("f1", "f1 (dense)")}
    dense = ticket.info["metrics"]["dense"]["accuracy"]["mean"]
    assert results[("accuracy", "accuracy (dense)")] == round(100 * dense, 2)
    assert card.data.datasets == ["nyu-mll/glue"] and "lottery-ticket" in card.data.tags
    assert card.data.base_model is None  # a local checkpoint folder is not a Hub id
    assert card.data.to_dict()["bert_tickets"]["sparsity"] == ticket.sparsity
    assert "bert-tickets find --task mrpc --sparsity 0.3" in card.text and "register_hook" in card.text
    # a second export replaces the first only once it is complete
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", "someone/tiny-mrpc-30", "--dry-run", str(out)]) == 0
    assert not list(tmp_path.glob(".release.*"))


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


class FakeHub(ThreadingHTTPServer):
    """Stands in for the Hub's HTTP API: records every request; answers create-repo, the card's metadata check,
    preupload and commit.

    Preupload answers "regular" for every file, so the files travel base64-encoded inside the commit payload
    (the real Hub sends large files through Xet storage instead, which this stand-in does not imitate).
    """

    def __init__(self):
        self.requests: list[dict] = []
        super().__init__(("127.0.0.1", 0), _FakeHubHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        hub: FakeHub = self.server  # type: ignore[assignment]
        hub.requests.append({"method": "POST", "path": self.path, "body": body,
                             "authorization": self.headers.get("Authorization", "")})
        if self.path == "/api/repos/create":
            request = json.loads(body)
            self._reply(200, {"url": f"{hub.url}/{request['organization']}/{request['name']}"})
        elif self.path == "/api/validate-yaml":  # the model card's metadata, checked before the commit
            self._reply(200, {"errors": [], "warnings": []})
        elif "/preupload/" in self.path:
            files = json.loads(body)["files"]
            self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                        for f in files]})
        elif "/commit/" in self.path:
            self._reply(200, {"commitUrl": f"{hub.url}/someone/tiny/commit/{'a' * 40}", "commitOid": "a" * 40})
        else:
            self._reply(404, {"error": f"not imitated: {self.path}"})

    def do_GET(self) -> None:
        self.server.requests.append({"method": "GET", "path": self.path, "body": b""})  # type: ignore[attr-defined]
        self._reply(404, {"error": f"not imitated: {self.path}"})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_push_uploads_through_the_hub_api(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = make_ticket(tiny_bert, glue_dir, tmp_path, capsys)
    dry_run = tmp_path / "release"
    assert main(["push", "--ticket", ticket, "--repo-id", "someone/tiny", "--dry-run", str(dry_run)]) == 0
    hub = FakeHub()
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_SecretTokenValue123", "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp_path / "hf_home")}
    try:
        done = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "push", "--ticket", ticket, "--repo-id",
                               "someone/tiny", "--private"], env=env, capture_output=True, text=True, timeout=300)
    finally:
        hub.shutdown()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"{hub.url}/someone/tiny"
    assert "SecretTokenValue" not in done.stdout + done.stderr
    assert [r["path"] for r in hub.requests] == ["/api/repos/create", "/api/validate-yaml",
                                                 "/api/models/someone/tiny/preupload/main",
                                                 "/api/models/someone/tiny/commit/main"]
    create, card_check, _, commit = hub.requests
    assert json.loads(card_check["body"])["content"] == (dry_run / "README.md").read_text()
    assert json.loads(create["body"]) | {"type": "model"} == {"name": "tiny", "organization": "someone",
                                                              "visibility": "private", "type": "model"}
    assert all(r.get("authorization") == "Bearer hf_SecretTokenValue123" for r in hub.requests)
    header, *files = [json.loads(line) for line in commit["body"].splitlines()]
    assert header["value"]["summary"] == "Upload lottery ticket (bert-tickets)"
    uploaded = {f["value"]["path"]: base64.b64decode(f["value"]["content"]) for f in files if f["key"] == "file"}
    # what reached the Hub is, byte for byte, the folder that --dry-run writes and verifies
    assert uploaded == {p.name: p.read_bytes() for p in dry_run.iterdir()}
    assert {"model.safetensors", "mask.safetensors", "README.md", "ticket.json"} <= set(uploaded)
