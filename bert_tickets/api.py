"""The Python API: one function per command, with the same settings and the same run folders.

    import bert_tickets as bt
    ticket = bt.find_ticket("sst2", 0.5, config="minilm", data_dir="../shared/data/glue", max_steps=200)
    on_rte = bt.evaluate_ticket(ticket, "rte", data_dir="../shared/data/glue", max_steps=200)
    table = bt.transfer(["sst2", "rte"], ["sst2", "rte"], 0.5, config="minilm", data_dir="../shared/data/glue")
    report = bt.study("minilm-cpu", output_dir="runs/studies/minilm-cpu")
    bt.push(ticket, "me/minilm-sst2-50", dry_run="release/")   # or a whole study: push(study_dir, repo_prefix=...)

Settings are keyword arguments named as their flags (`max_steps=200`, `learning_rate=5e-5`, `model_revision="v1"`:
the table in the README) or as `section__key` (`training__max_steps=200`); `settings={"training.max_steps": 200}`
takes the dotted keys. An unknown name is an error, as on the command line. Each call returns what the command
prints last: a `Ticket`, the transfer table with its folder, or a path or URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bert_tickets.errors import UserError


def _settings(kwargs: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments (flag names or section__key) and a dict of dotted keys -> `section.key` settings."""
    from bert_tickets.config import setting_specs

    by_flag = {spec.flag: spec.key for spec in setting_specs()}
    out = dict(settings or {})
    for name, value in kwargs.items():
        if value is None:
            continue
        key = by_flag.get(name) or (name.replace("__", ".") if "__" in name else None)
        if key is None:
            raise UserError(f"unknown setting {name!r} (see the settings table in the README, or section__key)")
        out[key] = value
    return out


def _takes_settings(function: Any) -> Any:
    """Every setting as a keyword argument in the function's signature and docstring (from the config's fields),
    so `help()` and tools that read signatures show them, with the same help as `--help`."""
    import inspect

    from bert_tickets.config import setting_specs

    signature = inspect.signature(function)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    specs = [s for s in setting_specs() if s.flag not in {p.name for p in params}]
    params += [inspect.Parameter(s.flag, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=f"{s.type_name} | None") for s in specs]
    function.__signature__ = signature.replace(parameters=params)
    function.__doc__ = (function.__doc__ or "") + "\n\n    Settings (keyword arguments; None keeps the default):\n" + \
        "\n".join(f"        {s.flag}: {s.describe()}" for s in specs)
    return function


@_takes_settings
def find_ticket(task: str, sparsity: float, *, method: str | None = None, config: str | None = None,
                ticket: Any = None, settings: dict[str, Any] | None = None, **kwargs: Any):
    """`bert-tickets find`: the ticket of `task` at `sparsity` found by `method` (default: the config's, IMP),
    evaluated next to dense over `seeds`. `ticket` (a folder or Ticket) for the methods that apply a given
    ticket's mask."""
    from bert_tickets.config import task_config
    from bert_tickets.imp import find_ticket as run
    from bert_tickets.ticket import Ticket

    inherited = Ticket.from_pretrained(_folder(ticket)).inherited_settings() if ticket is not None else {}
    chosen = _settings(kwargs | {"method": method}, settings) | {"pruning.sparsity": sparsity}
    return run(task_config(task, config, inherited | chosen).validate())


@_takes_settings
def evaluate_ticket(ticket: Any, task: str, *, config: str | None = None, settings: dict[str, Any] | None = None,
                    **kwargs: Any):
    """`bert-tickets evaluate`: a found ticket's mask fine-tuned on `task` (its own task or another), next to dense.
    Returns the evaluation as a Ticket (its info holds the scores)."""
    from bert_tickets.config import task_config
    from bert_tickets.imp import find_ticket as run
    from bert_tickets.methods.ticket import GivenTicket
    from bert_tickets.ticket import Ticket

    inherited = Ticket.from_pretrained(_folder(ticket)).inherited_settings() | {"pruning.method": GivenTicket.name}
    return run(task_config(task, config, inherited | _settings(kwargs, settings)).validate())


@dataclass
class TransferResult:
    folder: Path  # matrix.csv (long: source, target, seed, metric, value), matrix.md, matrix.tex, transfer.png
    table: dict[str, Any]  # table["cells"][source][target]: mean, std, relative to dense, matching, ...


@_takes_settings
def transfer(sources: list[str], targets: list[str], sparsity: float, *, seeds: int = 1, config: str | None = None,
             output_dir: str = "runs", settings: dict[str, Any] | None = None, **kwargs: Any) -> TransferResult:
    """`bert-tickets transfer`: each source's ticket fine-tuned on each target, with dense and random rows."""
    from bert_tickets.config import task_config
    from bert_tickets.transfer_matrix import TransferMatrix

    chosen = _settings(kwargs, settings)

    def config_for(cell_settings: dict[str, Any]) -> Any:
        return task_config(cell_settings["data.task"], config, chosen | cell_settings)

    from bert_tickets.transfer_matrix import plan

    matrix = TransferMatrix(list(sources), list(targets), sparsity, seeds, output_dir=output_dir,
                            config_for=config_for)
    results = matrix.run(plan(matrix.sources, matrix.targets))
    matrix.write_outputs(results)
    return TransferResult(folder=matrix.folder, table=matrix.table(results))


def study(spec: str, *, output_dir: str | None = None) -> Path:
    """`bert-tickets study`: every run a study file (or preset: paper, minilm, minilm-cpu) implies that is not done
    yet, then its report; returns the report's README.md."""
    from bert_tickets.report import write_report
    from bert_tickets.study_plan import StudyPlan, parse_spec, read_spec_text, run_study, save_spec

    text = read_spec_text(spec)
    parsed = parse_spec(text, spec)
    plan = StudyPlan(parsed, Path(output_dir or Path("runs") / "studies" / parsed.name))
    save_spec(plan.folder, text, parsed)
    run_study(plan, plan.jobs())
    return write_report(plan) / "README.md"


def push(source: Any, repo_id: str | None = None, *, repo_prefix: str | None = None, private: bool = False,
         revision: str | None = None, create_pr: bool = False, dry_run: str | None = None, fine_tuned: bool = False,
         seed: int | None = None) -> str:
    """`bert-tickets push`: a ticket (folder or Ticket) to `repo_id` (with `fine_tuned`, one of its evaluation's
    fine-tuned task models, `seed` or the best), or a study folder to `repo_prefix`-named repositories and a
    collection. Returns the URL, or the `dry_run` folder written instead of uploading."""
    import tempfile

    from bert_tickets.hub import PushOptions, check_repo_id, export_ticket, push_to_hub

    options = PushOptions(private=private, revision=revision, create_pr=create_pr)
    options.check()
    folder = Path(_folder(source))
    if repo_prefix is not None:
        from bert_tickets.hub_study import push_study

        return push_study(folder, repo_prefix, options, dry_run)
    if repo_id is None:
        raise UserError("push needs repo_id for a ticket (or repo_prefix for a study)")
    check_repo_id(repo_id)
    if dry_run is not None:
        return str(export_ticket(folder, dry_run, repo_id, fine_tuned, seed))
    with tempfile.TemporaryDirectory() as tmp:
        return push_to_hub(export_ticket(folder, Path(tmp) / "release", repo_id, fine_tuned, seed), repo_id, options)


def _folder(ticket: Any) -> str:
    return str(getattr(ticket, "path", ticket))
