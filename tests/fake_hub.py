"""A stand-in for the Hugging Face Hub's HTTP API, for push tests: it records every request and answers the ones
`huggingface_hub` sends for a release (repo info and creation, branches, the card's metadata check, preupload,
commit, collections), keeping the repositories' visibility, branches and files so that tests can check them.

Preupload answers "regular" for every file, so the files travel base64-encoded inside the commit payload
(the real Hub sends large files through Xet storage instead, which this stand-in does not imitate).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class FakeHub(ThreadingHTTPServer):
    def __init__(self, repos: dict[str, bool] | None = None):
        """`repos`: existing repositories ("model:owner/name" or "dataset:owner/name") -> private."""
        self.requests: list[dict] = []
        self.repos: dict[str, dict] = {key: {"private": private, "branches": {"main"}, "files": {}}
                                       for key, private in (repos or {}).items()}
        self.collections: dict[str, dict] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def paths(self) -> list[str]:
        """Every request as "METHOD path", in order; huggingface_hub < 1.0's extra protocol steps (a GET .../revision/
        probe before uploading, the card's metadata validated twice in a row) are left out, so that the same
        sequence holds for the versions pyproject.toml allows."""
        out: list[str] = []
        for r in self.requests:
            path = f"{r['method']} {r['path']}"
            repeated_check = path == "POST /api/validate-yaml" and out and out[-1] == path
            if not (r["method"] == "GET" and "/revision/" in r["path"]) and not repeated_check:
                out.append(path)
        return out


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        path = self._record(b"")
        parts = path.split("/")  # ['', 'api', 'models', owner, name]
        if len(parts) == 7 and parts[5] == "discussions":
            return self._reply(200, {"title": "Upload", "num": int(parts[6]), "author": {"name": "someone"},
                                     "createdAt": "2026-11-26T00:00:00.000Z", "status": "draft",
                                     "repo": {"name": f"{parts[3]}/{parts[4]}", "type": parts[2][:-1]},
                                     "isPullRequest": True, "events": [], "changes": {"base": "refs/heads/main"},
                                     "filesWithConflicts": []})
        if len(parts) >= 7 and parts[5] == "revision":  # huggingface_hub < 1.0 asks before uploading; downloads too
            repo = self.server.repos.get(f"{parts[2][:-1]}:{parts[3]}/{parts[4]}")
            if repo is None:
                return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            files = repo["files"].get("/".join(parts[6:]), {})
            return self._reply(200, {"id": f"{parts[3]}/{parts[4]}", "sha": "b" * 40, "xetEnabled": False,
                                     "private": repo["private"], "siblings": [{"rfilename": f} for f in files]})
        if len(parts) >= 6 and parts[3] == "resolve":  # a file's download: /owner/name/resolve/revision/file
            return self._file(parts, body=True)
        if len(parts) == 5 and parts[1] == "api" and parts[2] in ("models", "datasets"):
            repo = self.server.repos.get(f"{parts[2][:-1]}:{parts[3]}/{parts[4]}")
            if repo is None:
                return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return self._reply(200, {"id": f"{parts[3]}/{parts[4]}", "private": repo["private"], "sha": "b" * 40})
        self._reply(404, {"error": f"not imitated: {path}"})

    def do_HEAD(self) -> None:
        parts = self._record(b"").split("/")
        if len(parts) >= 6 and parts[3] == "resolve":
            return self._file(parts, body=False)
        self._reply(404, {"error": "not imitated"})

    def _file(self, parts: list[str], body: bool) -> None:
        """A stored file's bytes, with the headers huggingface_hub's downloader reads (commit, etag, size)."""
        repo = self.server.repos.get(f"model:{parts[1]}/{parts[2]}")
        revision = parts[4] if parts[4] != "b" * 40 else "main"  # the download asks for the commit it was told
        data = (repo or {}).get("files", {}).get(revision, {}).get("/".join(parts[5:]))
        if data is None:
            return self._reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
        self.send_response(200)
        for key, value in {"X-Repo-Commit": "b" * 40, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                           "Content-Length": str(len(data)), "Content-Type": "application/octet-stream"}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = self._record(body)
        hub = self.server
        if path == "/api/repos/create":
            request = json.loads(body)
            kind, repo_id = request.get("type", "model"), f"{request['organization']}/{request['name']}"
            hub.repos[f"{kind}:{repo_id}"] = {"private": request.get("visibility") == "private" or
                                              bool(request.get("private")), "branches": {"main"}, "files": {}}
            prefix = "" if kind == "model" else f"{kind}s/"
            return self._reply(200, {"url": f"{hub.url}/{prefix}{repo_id}"})
        if path == "/api/validate-yaml":  # a card's metadata, checked before the commit
            return self._reply(200, {"errors": [], "warnings": []})
        if path == "/api/collections":
            request = json.loads(body)
            slug = f"{request['namespace']}/{request['title'].lower().replace(' ', '-').replace(':', '')}-{'c' * 24}"
            hub.collections[slug] = {"slug": slug, "title": request["title"], "owner": {"name": request["namespace"]},
                                     "items": [], "lastUpdated": "2026-11-26T00:00:00.000Z", "position": 0,
                                     "private": request["private"], "theme": "blue", "upvotes": 0,
                                     "description": request.get("description")}
            return self._reply(200, hub.collections[slug])
        if path.startswith("/api/collections/") and path.endswith("/items"):
            collection = hub.collections[path.removeprefix("/api/collections/").removesuffix("/items")]
            item = json.loads(body)
            collection["items"].append({"_id": f"{len(collection['items']):024d}", "id": item["item"]["id"],
                                        "type": item["item"]["type"], "position": len(collection["items"]),
                                        "note": {"text": item.get("note")}})
            return self._reply(200, collection)
        parts = path.split("/")  # ['', 'api', 'models', owner, name, action, revision...]
        if len(parts) >= 6 and parts[1] == "api" and parts[2] in ("models", "datasets"):
            repo = hub.repos.get(f"{parts[2][:-1]}:{parts[3]}/{parts[4]}")
            if repo is None:
                return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            action, revision = parts[5], "/".join(parts[6:])
            if action == "discussions" and not revision:  # a pull request, opened before its commits
                repo["branches"].add("refs/pr/1")
                return self._reply(200, {"num": 1})
            if action == "branch":
                repo["branches"].add(revision)
                return self._reply(200, {})
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                   for f in files]})
            if action == "commit":
                if revision not in repo["branches"]:
                    return self._reply(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                legacy_pr = "create_pr=1" in urlsplit(self.path).query  # huggingface_hub < 1.0 opens PRs so
                repo["files"]["refs/pr/1" if legacy_pr else revision] = commit_files(body)
                reply = {"commitUrl": f"{hub.url}/{parts[3]}/{parts[4]}/commit/{'a' * 40}", "commitOid": "a" * 40}
                if legacy_pr:
                    reply["pullRequestUrl"] = f"{hub.url}/{parts[3]}/{parts[4]}/discussions/1"
                return self._reply(200, reply)
        self._reply(404, {"error": f"not imitated: {path}"})

    def _record(self, body: bytes) -> str:
        path = unquote(urlsplit(self.path).path)
        self.server.requests.append({"method": self.command, "path": path, "query": urlsplit(self.path).query,
                                     "body": body, "authorization": self.headers.get("Authorization", "")})
        return path

    def _reply(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def commit_files(body: bytes) -> dict[str, bytes]:
    """The files of a commit payload (NDJSON: a header, then one line per file)."""
    _, *lines = [json.loads(line) for line in body.splitlines()]
    return {f["value"]["path"]: base64.b64decode(f["value"]["content"]) for f in lines if f["key"] == "file"}


def hub_env(hub: FakeHub, home) -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {
        "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_SecretTokenValue123", "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(home)}
