"""A study's spec: one declarative file (configs/studies/*.yaml) naming the model and recipe, the tasks, the
baselines, the sparsities, the seeds and a transfer matrix; parsed and checked here before anything trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bert_tickets import paths
from bert_tickets.config import Config, preset_names, read_yaml_text, task_config, yaml_mapping
from bert_tickets.errors import UserError
from bert_tickets.files import write_text
from bert_tickets.methods import METHODS, validated
from bert_tickets.methods import baselines as all_baselines
from bert_tickets.studies.baselines import DENSE, parse_baselines
from bert_tickets.studies.sources import CONTROLS, SOURCES, parse_source
from bert_tickets.tasks import get_task

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a folder name: never a path
SPEC_KEYS = {"name", "description", "config", "data_dir", "settings", "task_settings", "tasks", "sparsities",
             "baselines", "baseline_sparsities", "seeds", "searches", "transfer"}
TRANSFER_KEYS = {"sources", "targets", "sparsity", "seeds"}


@dataclass
class TransferSpec:
    sources: list[str]
    targets: list[str]
    sparsity: float
    seeds: int | None = None  # the cells' seeds (and a source-only task's ticket's); None: the study's


@dataclass
class StudySpec:
    name: str
    tasks: list[str]
    sparsities: list[float]
    seeds: int = 3
    searches: int = 1  # independent IMP mask searches per studied task (other level seeds), each evaluated alike
    baselines: list[str] = field(default_factory=all_baselines)
    baseline_sparsities: list[float] | None = None  # where the baselines run; None: every sparsity
    config: str | None = None  # a preset name or YAML file: the recipe of every run
    data_dir: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # `section.key` for every run
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task, over `settings`
    transfer: TransferSpec | None = None
    description: str = ""

    def config_for(self, task: str, output_dir: Path, **settings: Any) -> Config:
        """One run's config: preset, then the study's settings, the task's, and this run's own."""
        name = get_task(task).name
        layered = {"data.task": name, "pruning.seeds": self.seeds, "output_dir": str(output_dir)}
        if self.data_dir is not None:
            layered["data.data_dir"] = self.data_dir
        layered |= self.settings | self.task_settings.get(name, {}) | settings
        return validated(task_config(name, self.config, layered))

    @property
    def transfer_seeds(self) -> int:
        return self.transfer.seeds if self.transfer and self.transfer.seeds else self.seeds

    @property
    def ticket_sources(self) -> list[str]:
        """The transfer sources that are tasks (each brings its IMP ticket), not a mask made from θ0 alone."""
        tasks = [parse_source(s).ticket_task for s in self.transfer.sources] if self.transfer else []
        return [t for t in tasks if t is not None]

    def seeds_for(self, task: str) -> int:
        """A studied task's ticket runs the study's seeds; a task that is only a transfer source, the cells'."""
        return self.seeds if task in self.tasks else self.transfer_seeds


STUDIES = "bert_tickets.configs.studies"


def spec_names() -> list[str]:
    return preset_names(STUDIES)


def read_spec_text(source: str) -> str:
    return read_yaml_text(source, STUDIES, kind="study")


def parse_spec(text: str, where: str = "study") -> StudySpec:
    """A validated spec: every mistake is one clear UserError, before anything trains."""
    data = yaml_mapping(text, where)
    if unknown := sorted(set(data) - SPEC_KEYS):
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(SPEC_KEYS))})")
    for key in ("name", "tasks", "sparsities"):
        if not data.get(key):
            raise UserError(f"{where}: {key!r} is required")
    for key in ("name", "description", "config", "data_dir"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UserError(f"{where}: {key!r} must be text, got {type(data[key]).__name__}")
    if not STUDY_NAME.fullmatch(data["name"]) or ".." in data["name"]:
        raise UserError(f"{where}: name {data['name']!r} must be letters, digits, '.', '_' or '-' (it names the "
                        "study's folder, runs/studies/<name>)")
    tasks = [get_task(str(t)).name for t in _as_list(data["tasks"], "tasks", where)]
    sparsities = sorted(_sparsity(s, where) for s in _as_list(data["sparsities"], "sparsities", where))
    task_settings = {get_task(str(t)).name: _mapping(v, f"task_settings.{t}", where)
                     for t, v in _mapping(data.get("task_settings"), "task_settings", where).items()}
    spec = StudySpec(
        name=str(data["name"]), tasks=tasks, sparsities=sparsities, seeds=_seeds(data.get("seeds", 3), where),
        searches=_seeds(data.get("searches", 1), where, "searches"),
        baselines=parse_baselines(",".join(map(str, data.get("baselines", all_baselines()) or []))),
        config=data.get("config"), data_dir=data.get("data_dir"),
        settings=_mapping(data.get("settings"), "settings", where), task_settings=task_settings,
        transfer=_transfer(data.get("transfer"), where), description=str(data.get("description", "")))
    if data.get("baseline_sparsities") is not None:
        spec.baseline_sparsities = sorted(_sparsity(s, where) for s in _as_list(
            data["baseline_sparsities"], "baseline_sparsities", where))
        if extra := [s for s in spec.baseline_sparsities if s not in sparsities]:
            raise UserError(f"{where}: baseline sparsity {extra[0]} is not one of the sparsities {sparsities}")
    for key in ("pruning.method", "pruning.sparsity", "pruning.seeds", "data.task", "output_dir"):
        if key in spec.settings or any(key in s for s in spec.task_settings.values()):
            raise UserError(f"{where}: {key!r} is set by the study itself (tasks, sparsities, seeds, baselines)")
    for task in dict.fromkeys(tasks + (spec.transfer.targets if spec.transfer else [])):  # unknown keys, bad values
        spec.config_for(task, Path("runs"))
    return spec


def _as_list(value: Any, key: str, where: str) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UserError(f"{where}: {key!r} must not be empty")
    return items


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: {key!r} must be a mapping of section.key: value")
    return {str(k): v for k, v in value.items()}


def _sparsity(value: Any, where: str) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: sparsity {value!r} is not a number") from None
    if not 0.0 < s < 1.0:
        raise UserError(f"{where}: sparsity must be in (0, 1), got {value}")
    return s


def _seeds(value: Any, where: str, key: str = "seeds") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{where}: {key} must be a whole number of at least 1, got {value!r}")
    return value


def _transfer(value: Any, where: str) -> TransferSpec | None:
    if value is None:
        return None
    data = _mapping(value, "transfer", where)
    if unknown := sorted(set(data) - TRANSFER_KEYS):
        raise UserError(f"{where}: unknown key 'transfer.{unknown[0]}' (known: {', '.join(sorted(TRANSFER_KEYS))})")
    sources = [str(s) for s in _as_list(data.get("sources") or [], "transfer.sources", where)]
    chosen = [name for name, source in SOURCES.items() if source not in CONTROLS]  # rows a spec may name
    for source in sources:
        if source in (*METHODS, DENSE, *SOURCES) and source not in chosen:
            raise UserError(f"{where}: transfer source {source!r} has no ticket to transfer: name a task "
                            f"(its IMP ticket) or {' or '.join(map(repr, chosen))}; the random and dense rows are "
                            "always added")
    sources = [parse_source(s).name for s in sources]
    targets = [get_task(str(t)).name for t in _as_list(data.get("targets") or [], "transfer.targets", where)]
    seeds = _seeds(data["seeds"], where) if data.get("seeds") is not None else None
    return TransferSpec(sources, targets, _sparsity(data.get("sparsity"), where), seeds)


def save_spec(folder: Path, text: str, spec: StudySpec) -> None:
    """The spec as it runs, in its folder; a folder holding another study (another name) is refused: one study per
    folder, whose spec and report would otherwise be replaced. The same study, extended, reruns there."""
    path = folder / paths.STUDY_SPEC
    if path.is_file():
        try:
            name = yaml_mapping(path.read_text(errors="replace"), str(path)).get("name")
        except UserError:
            name = None
        if name != spec.name:
            raise UserError(f"{folder} holds another study ({name!r}, not {spec.name!r}): choose another --output-dir")
    write_text(path, text)
