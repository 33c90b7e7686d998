"""A ticket of a sentence-transformers model (MiniLM, the default, is one) released so that
`SentenceTransformer(folder)` loads it as its base loads: the base's `modules.json`, its sentence-transformers
configs and its module folders (pooling, normalization, dense layers) beside the masked encoder.

Without them, sentence-transformers falls back to plain mean pooling with no normalization: embeddings of another
kind, silently. The encoder itself is module 0 (path ""): the release's own model files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from bert_tickets.engine.modeling import resolve_model_path
from bert_tickets.errors import UserError
from bert_tickets.ranks import log

CONFIG_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")


def base_model_folder(name: str, revision: str | None) -> Path | None:
    """The base model's folder with its sentence-transformers files: a local folder as it is, a Hub model's
    (those files only) from the Hub cache; None where the model has no modules.json (not a sentence-transformers
    model) or the Hub cannot say."""
    path = Path(resolve_model_path(name))
    if path.is_dir():
        return path if (path / "modules.json").is_file() else None
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        hf_hub_download(name, "modules.json", revision=revision)
        return Path(snapshot_download(name, revision=revision,
                                      allow_patterns=[*CONFIG_FILES, "[0-9]*_*/*"]))  # module folders: 1_Pooling/...
    except Exception:  # no such file (a plain transformers model), offline, ...: released as a plain encoder
        return None


def module_folders(base: Path) -> list[str]:
    """The module folders modules.json names, each a plain relative folder inside `base` (a tampered
    `../secrets` is refused, not copied)."""
    try:
        modules: Any = json.loads((base / "modules.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{base / 'modules.json'} is not readable JSON ({exc})") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise UserError(f"{base / 'modules.json'} is not a list of modules")
    folders = [str(m.get("path", "")) for m in modules if m.get("path")]
    for folder in folders:
        parts = PurePosixPath(folder).parts
        if PurePosixPath(folder).is_absolute() or ".." in parts or not parts:
            raise UserError(f"{base / 'modules.json'}: module path {folder!r} is not a folder inside the model")
    return folders


def copy_sentence_modules(base: Path | None, folder: Path) -> bool:
    """Copy the base's sentence-transformers configs and module folders into the release `folder`; whether it
    is a sentence-transformers model (nothing is copied otherwise)."""
    if base is None or not (base / "modules.json").is_file():
        return False
    modules = module_folders(base)  # checked before anything is copied
    for name in CONFIG_FILES:
        if (base / name).is_file():
            shutil.copyfile(base / name, folder / name)  # Hub cache entries are links into its blobs: their content
    for module in modules:
        source = base / module
        for file in sorted(source.rglob("*")) if source.is_dir() else []:
            if file.is_file():
                target = folder / module / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
    log("the base is a sentence-transformers model: its modules.json, configs and module folders are in the release")
    return True
