"""Task adapters, by name. Installed as `bert_tickets.tasks`.

Task modules load datasets, torch and transformers where they use them: the config and the command line read this
registry for `--help`, which answers without them (tests/test_light_cli.py).
"""

from __future__ import annotations

from typing import Any

from bert_tickets.errors import UserError
from bert_tickets.tasks.base import PreparedData, TaskAdapter
from bert_tickets.tasks.files import CUSTOM, FileTask
from bert_tickets.tasks.glue import GLUE_TASKS, GlueTask
from bert_tickets.tasks.mlm import MaskedLMTask
from bert_tickets.tasks.squad import SquadTask

TASKS: dict[str, TaskAdapter] = {}
ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli"}


def register_task(task: TaskAdapter) -> TaskAdapter:
    """One more task, by its name: a `TaskAdapter` (a class, or a record of a family such as `GlueTask`). Its own
    data settings (`data_settings`) must be known when the config is first imported: register it before that."""
    if not task.name or task.name != task.name.lower() or task.name in TASKS or task.name in ALIASES:
        raise UserError(f"cannot register task {task.name!r}: a task needs a new lower-case name")
    TASKS[task.name] = task
    return task


BUILT_IN: list[TaskAdapter] = [*GLUE_TASKS, SquadTask(), MaskedLMTask(), CUSTOM]  # in --help's order
for built_in in BUILT_IN:  # the registry's lines
    register_task(built_in)


def tasks_help() -> str:
    """`--task`'s help: every registered task (custom: your own files)."""
    return ", ".join(name if name != CUSTOM.name else f"{name} (your own CSV or JSON lines files: --train-file, "
                     "--validation-file)" for name in TASKS)


def task_data_settings() -> list[type]:
    """The dataclasses of every task's own data settings: the config's `data` section includes their fields."""
    return list(dict.fromkeys(t.data_settings for t in TASKS.values() if t.data_settings is not None))


def get_task(name: str) -> TaskAdapter:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise UserError(f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[key]


def task_for(data_config: Any) -> TaskAdapter:
    """The task of a run's data settings, bound to its files where it reads the user's own (`custom`)."""
    task = get_task(data_config.task)
    return task.bind(data_config) if isinstance(task, FileTask) else task


__all__ = ["TASKS", "FileTask", "GlueTask", "PreparedData", "TaskAdapter", "get_task", "register_task",
           "task_data_settings", "task_for", "tasks_help"]
