"""The `bert-tickets` command. Bad input: one line on stderr, exit code 2, earlier results untouched."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from bert_tickets.errors import UserError
from bert_tickets.files import is_utf8
from bert_tickets.progress import duration_text
from bert_tickets.ranks import is_main_process
from bert_tickets.stats import MATCHING_RULE, matching_mark


class StoreOnce(argparse._StoreAction):
    """A flag's value, refused when two spellings of it are given (`--max-length 32 --max_seq_length 64` would
    otherwise silently keep the last); one spelling repeated keeps the last, as scripts appending overrides expect."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        _given_once(parser, namespace, self.dest, option_string)
        super().__call__(parser, namespace, values, option_string)


class SwitchOnce(argparse.BooleanOptionalAction):
    """--flag / --no-flag (one spelling: the last wins), refused beside another spelling of it (as `StoreOnce`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        _given_once(parser, namespace, self.dest, option_string)
        super().__call__(parser, namespace, values, option_string)


def _given_once(parser: argparse.ArgumentParser, namespace: argparse.Namespace, dest: str,
                option_string: str | None) -> None:
    if option_string is None:  # a positional argument: argparse gives it once
        return
    spelling = option_string.replace("--no-", "--", 1)
    given = namespace.__dict__.setdefault("_given_flags", {})
    if given.setdefault(dest, spelling) != spelling:
        parser.error(f"{given[dest]} and {spelling} are two spellings of one setting: give one")


class OneLineParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", None, StoreOnce)  # every plain flag is given at most once
        self.register("action", "store", StoreOnce)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def decimal_float(text: str) -> float:
    """A plain decimal number (`0.5`, `5e-1`), read as every setting is (`config.strict_scalar`): not `nan`, `inf`
    or `1_0`, which Python's float() would take."""
    from bert_tickets.config import strict_scalar

    value = strict_scalar(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(text)
    return float(value)


def decimal_int(text: str) -> int:
    """A plain decimal integer (`config.strict_scalar`): not `1_000` or `٣`, which Python's int() would take."""
    from bert_tickets.config import strict_scalar

    value = strict_scalar(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(text)
    return value


decimal_float.__name__, decimal_int.__name__ = "float", "int"  # argparse names the type in its error


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bert-tickets")
    except PackageNotFoundError:  # a source tree run without installing
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="bert-tickets", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bert-tickets {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_find_and_evaluate(sub)
    _add_transfer(sub)
    _add_study_and_report(sub)
    _add_push(sub)
    demo = sub.add_parser("demo", help="the paper's comparison in small (IMP at 50%%, random pruning, dense) on a "
                          "CPU: local GLUE files or the Hub")
    demo.add_argument("--data-dir", help="the official glue_data layout (default: the Hub's nyu-mll/glue)")
    demo.add_argument("--output-dir", default="runs", help="where run folders go (default: runs)")
    return parser


def _add_find_and_evaluate(sub: Any) -> None:
    from bert_tickets.methods import METHODS, baselines, methods_help
    from bert_tickets.tasks import tasks_help

    find = sub.add_parser("find", help="find a ticket by iterative magnitude pruning (IMP) or a baseline method")
    find.add_argument("--sparsity", required=True, type=decimal_float,
                      help="target fraction of prunable weights pruned")
    evaluate = sub.add_parser("evaluate", help="fine-tune a ticket's mask on any task, next to dense")
    evaluate.add_argument("--ticket", required=True, help="a ticket folder (mask.safetensors + ticket.json), or a "
                          "released ticket on the Hub (OWNER/NAME)")
    for command in (find, evaluate):
        command.add_argument("--task", "--task-name", required=True, help=tasks_help())
        command.add_argument("--config", help="preset name (paper, minilm) or YAML file; default: paper recipe")
        finding = set() if command is find else _mask_finding_flags()
        _add_setting_flags(command, skip={"task", "sparsity", "method", "ticket"} | finding)
        for flag in sorted(finding):
            command.add_argument(f"--{flag.replace('_', '-')}", f"--no-{flag.replace('_', '-')}", action=FindsAMask)
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override any setting, e.g. --set training.warmup_ratio=0.1 (repeatable)")
        for batch in ("train", "eval"):
            command.add_argument(f"--per-device-{batch}-batch-size", action=PerProcessBatch, help=argparse.SUPPRESS)
        command.add_argument("--bf16", "--fp16", action=PrecisionSwitch, help="run_glue's spelling of "
                             "--mixed-precision bf16 / fp16")
    for command in (find, evaluate):
        _add_worker_flags(command, "evaluation seeds")
    find.add_argument("--method", choices=list(METHODS), metavar="METHOD", help=f"default imp. {methods_help()}")
    find.add_argument("--ticket", help="a ticket folder or Hub repository (OWNER/NAME), for the methods that apply "
                      "a given ticket's mask ("
                      f"{', '.join(name for name, m in METHODS.items() if m.needs_ticket)})")
    find.add_argument("--baselines", help="comma-separated baselines run at the ticket's sparsity with the same "
                      f"recipe and seeds, then a table and a verdict: {', '.join(baselines())}")


def _mask_finding_flags() -> set[str]:
    from bert_tickets.config import MASK_FINDING, setting_specs

    return {spec.flag for spec in setting_specs() if spec.key in MASK_FINDING}


def _add_transfer(sub: Any) -> None:
    transfer = sub.add_parser("transfer", help="the cross-task transfer matrix of tickets, with dense and random rows")
    transfer.add_argument("--sources", required=True, help="comma-separated tasks whose tickets transfer, or magnitude")
    transfer.add_argument("--targets", required=True, help="comma-separated tasks to fine-tune on")
    transfer.add_argument("--sparsity", required=True, type=decimal_float,
                          help="the sparsity of every ticket and mask")
    transfer.add_argument("--cell", help="i/N: compute only this worker's share of the cells (e.g. a job array)")
    transfer.add_argument("--config", help="preset name (paper, minilm) or YAML file; default: paper recipe")
    transfer.add_argument("--set", action="append", default=[], metavar="[TASK:]KEY=VALUE",
                          help="override a setting, for every run or (TASK:KEY=VALUE) for one task's runs only")
    _add_setting_flags(transfer, skip={"task", "sparsity", "train_file", "validation_file", "method", "ticket"})
    _add_worker_flags(transfer, "cells")


def _add_study_and_report(sub: Any) -> None:
    study = sub.add_parser("study", help="run a declarative study (configs/studies/*.yaml), then write its report")
    from bert_tickets.studies.spec import spec_names

    study.add_argument("spec", help="a study file, or a preset: " + ", ".join(spec_names()))
    study.add_argument("--output-dir", help="the study folder (default: runs/studies/<name>)")
    study.add_argument("--cell", help="i/N: compute only this worker's share of the study's runs (e.g. a job array)")
    study.add_argument("--plan", action="store_true", help="list the study's runs and which are done; train nothing")
    _add_worker_flags(study, "runs (tickets and the masks made from θ0 first, then what reuses a ticket)")
    report = sub.add_parser("report", help="write a study's report from its finished runs (never trains)")
    report.add_argument("study_dir", help="a study folder (holding study.yaml)")


def _add_push(sub: Any) -> None:
    push = sub.add_parser("push", help="release a ticket, or a whole study, on the Hugging Face Hub (or --dry-run "
                          "into a folder)")
    what = push.add_mutually_exclusive_group(required=True)
    what.add_argument("--ticket", help="a ticket folder (with --repo-id)")
    what.add_argument("--study", metavar="DIR", help="a study folder: each finished ticket to its own repository, "
                      "the report to a dataset repository, and a collection of them (with --repo-prefix)")
    push.add_argument("--repo-id", help="OWNER/NAME on the Hub, for --ticket")
    push.add_argument("--repo-prefix", metavar="OWNER/PREFIX", help="for --study: repositories are named "
                      "PREFIX-<task>-<sparsity %%> and PREFIX-report")
    push.add_argument("--private", action="store_true", help="create new repositories as private; an existing "
                      "public repository is refused")
    push.add_argument("--revision", help="upload to this branch (created if missing) instead of main")
    push.add_argument("--create-pr", action="store_true", help="open a pull request against main instead of "
                      "committing")
    push.add_argument("--fine-tuned", action="store_true", help="release a fine-tuned task model of the ticket's "
                      "evaluation (kept with --set training.keep_finetuned=true) instead of the ticket itself")
    push.add_argument("--seed", type=decimal_int, help="with --fine-tuned: the evaluation seed to release (default: "
                      "the best by the dev metric)")
    push.add_argument("--dry-run", metavar="OUT", help="only write and verify the Hub-ready folder(s) into OUT "
                      "(offline)")


def _add_worker_flags(parser: argparse.ArgumentParser, jobs: str) -> None:
    parser.add_argument("--workers", type=decimal_int, help=f"local processes for the {jobs}, pinned to the visible "
                        "GPUs in turn (default: one per GPU; more than the GPUs pack several fine-tunings on each)")


def _add_setting_flags(parser: argparse.ArgumentParser, skip: set[str]) -> None:
    """A flag for every setting (`config.setting_specs`: help, default, choices and rule from its dataclass field),
    less those this command sets itself; --flag-name and Hugging Face's --flag_name spelling alike."""
    from bert_tickets.config import setting_specs

    sections: dict[str, Any] = {}
    for spec in setting_specs():
        if spec.flag in skip:
            continue
        section = spec.key.split(".")[0] if "." in spec.key else "output"
        group = sections.get(section) or sections.setdefault(section, parser.add_argument_group(f"{section} settings"))
        # one spelling: `dashed` turns Hugging Face's --flag_name into it before parsing; their scripts' names too
        spellings = [f"--{spec.flag.replace('_', '-')}", *HF_ALIASES.get(spec.key, [])]
        kwargs: dict[str, Any] = {"dest": spec.flag, "help": spec.describe().replace("%", "%%")}
        if spec.type_name == "bool":
            kwargs["action"] = SwitchOnce
        else:
            kwargs["metavar"] = spec.type_name.upper() if not spec.choices else "{" + ",".join(spec.choices) + "}"
            kwargs["nargs"] = "+" if spec.type_name == "list" else None
            kwargs["choices"] = spec.choices
        group.add_argument(*spellings, **kwargs)


# run_glue.py's and the reference code's names for the same settings (in their --dash-spelling: see `dashed`)
HF_ALIASES = {"model.name": ["--model-name-or-path"], "data.max_length": ["--max-seq-length"],
              "training.epochs": ["--num-train-epochs"]}


class PerProcessBatch(argparse.Action):
    """--per_device_{train,eval}_batch_size mean per process in Hugging Face's scripts; ours are global batches."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        ours = "--eval-batch-size" if "eval" in (option_string or "") else "--batch-size"
        parser.error(f"{option_string} is per process in Hugging Face's scripts; {ours} here is the global "
                     f"batch, split over the processes: give {ours} {values} × the number of processes")


class PrecisionSwitch(argparse.Action):
    """run_glue's --bf16 / --fp16: --mixed-precision bf16 / fp16 (two of them, or one beside --mixed-precision, are
    refused as two spellings of one setting)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, "mixed_precision", nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        _given_once(parser, namespace, self.dest, option_string)
        setattr(namespace, self.dest, (option_string or "").lstrip("-"))


class FindsAMask(argparse.Action):
    """A setting of how a mask is found (`config.MASK_FINDING`), refused by `evaluate`, which applies the ticket's
    mask: it would only rename the run folder."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} is how a mask is found; evaluate applies the ticket's mask: drop it")


def _setting_flags_given(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """`section.key -> (flag, value)` for every setting flag on the command line (the config converts the values);
    --ticket is not among them: a ticket's folder comes in through its inherited settings, resolved."""
    from bert_tickets.config import setting_specs

    return {spec.key: (spec.flag, getattr(args, spec.flag)) for spec in setting_specs()
            if spec.flag != "ticket" and getattr(args, spec.flag, None) is not None}


def find_overrides(args: argparse.Namespace, task: str | None = None) -> dict[str, Any]:
    """--set items, then flags, then `--set TASK:KEY=VALUE` items for `task`'s runs (the specific one wins)."""
    from bert_tickets.tasks import get_task

    run_task = get_task(task).name if task else None
    items = list(map(_set_item, args.set))
    overrides: dict[str, Any] = {key: value for scope, key, value in items if scope is None}
    for key, (flag, value) in _setting_flags_given(args).items():
        if key in overrides:  # one of the two would silently lose
            raise UserError(f"--{flag.replace('_', '-')} and --set {key}=... both set {key}: give it once")
        overrides[key] = value
    return overrides | {key: value for scope, key, value in items if run_task and scope == run_task}


def _set_item(item: str) -> tuple[str | None, str, str]:
    """`[TASK:]KEY=VALUE` -> (task or None, key, value)."""
    from bert_tickets.tasks import get_task

    key, sep, value = item.partition("=")
    if not sep:
        raise UserError(f"--set expects [TASK:]KEY=VALUE, got {item!r}")
    scope, _, key = key.strip().rpartition(":")
    return (get_task(scope).name if scope else None), key, value


def run_find(args: argparse.Namespace) -> int:
    from bert_tickets.api import find

    found = find(args.task, config=args.config, ticket=args.ticket, baselines=_list(args.baselines),
                 workers=args.workers, settings=find_overrides(args, args.task))
    return _print_found(found)


def run_demo(args: argparse.Namespace) -> int:
    from bert_tickets.api import demo

    return _print_found(demo(data_dir=args.data_dir, output_dir=args.output_dir))


def run_evaluate(args: argparse.Namespace) -> int:
    """A given ticket on any task: the ticket's own recipe and model, unless the command says otherwise."""
    from bert_tickets.api import find
    from bert_tickets.config import MASK_FINDING

    settings = find_overrides(args, args.task)
    if finding := sorted(set(settings) & set(MASK_FINDING)):
        raise UserError(f"{', '.join(finding)}: how a mask is found; evaluate applies the ticket's mask: drop it")
    found = find(args.task, config=args.config, ticket=args.ticket, evaluate=True, workers=args.workers,
                 settings=settings)
    return _print_found(found)


def _print_found(found: Any) -> int:
    print_summary(found.run, found.ticket.info)
    if found.comparison:
        print_comparison(found)
    print(found.ticket.path)
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    from bert_tickets.api import transfer
    from bert_tickets.studies.transfer_tables import markdown

    items = list(map(_set_item, args.set))  # a bad item fails now, not after hours of cells
    settings = find_overrides(args)
    per_task: dict[str, dict[str, Any]] = {}
    for scope, key, value in items:
        if scope is not None:
            per_task.setdefault(scope, {})[key] = value
    result = transfer(_names(args.sources), _names(args.targets), args.sparsity, seeds=args.seeds or 1,
                      config=args.config, output_dir=args.output_dir or "runs", task_settings=per_task,
                      cell=args.cell, workers=args.workers, settings=settings)
    if result.table is None:
        print(f"worker {args.cell}: {result.cells_done} of {result.cells_total} cells done; run without --cell to "
              "merge")
    else:
        print(markdown(result.table))
    print(result.folder)
    return 0


def run_study_command(args: argparse.Namespace) -> int:
    from bert_tickets.api import plan_study, study
    from bert_tickets.studies.shares import share

    if args.plan:
        print_plan(plan_study(args.spec, output_dir=args.output_dir))
        return 0
    readme = study(args.spec, output_dir=args.output_dir, cell=args.cell, workers=args.workers)
    if readme is None:
        status = plan_study(args.spec, output_dir=args.output_dir)
        print(f"worker {args.cell}: {len(share(status.jobs, args.cell))} of {len(status.jobs)} runs done; "
              f"`bert-tickets report {status.plan.folder}` once every worker has finished")
        return 0
    print(readme)
    return 0


def print_plan(status: Any) -> None:
    for job, finished in status.jobs:
        print(f"{'done   ' if finished else 'missing'}  {job}")
    done = sum(finished for _, finished in status.jobs)
    print(f"{done} of {len(status.jobs)} runs done; {status.fine_tunings} fine-tunings in all, "
          f"{status.pending_fine_tunings} still to train{_time_estimate(status)}")


def _time_estimate(status: Any) -> str:
    """The pending fine-tunings' time at the recorded mean, as the end of the plan's last line."""
    if status.pending_fine_tunings == 0:
        return ""
    if status.estimated_seconds is None:
        return "; no fine-tuning recorded yet to estimate their time from"
    each = status.estimated_seconds / status.pending_fine_tunings
    return (f", {duration_text(status.estimated_seconds)} in one process at the mean of the {status.recorded} "
            f"recorded ({each:.0f} s each; workers sharing one device divide it by less than their number)")


def run_report(args: argparse.Namespace) -> int:
    from bert_tickets.api import report

    result = report(args.study_dir)
    if result.missing:
        print(f"{result.missing} of {result.total} runs missing (listed in the report); rerun the study to compute "
              "them", file=sys.stderr)
    print(result.readme)
    return 0


def run_push(args: argparse.Namespace) -> int:
    from bert_tickets.api import push

    if args.ticket is not None and (args.repo_id is None or args.repo_prefix is not None):
        raise UserError("--ticket takes --repo-id OWNER/NAME (not --repo-prefix)")
    if args.study is not None and args.repo_prefix is None:
        raise UserError("--study takes --repo-prefix OWNER/PREFIX (not --repo-id)")
    print(push(args.study or args.ticket, args.repo_id, repo_prefix=args.repo_prefix, private=args.private,
               revision=args.revision, create_pr=args.create_pr, dry_run=args.dry_run, fine_tuned=args.fine_tuned,
               seed=args.seed))
    return 0


def _list(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"expected a comma-separated list of tasks, got {text!r}")
    return names


def print_comparison(found: Any) -> None:
    from bert_tickets.studies.baselines import comparison_table

    ticket = found.ticket
    primary = ticket.info["primary_metric"]
    print(f"\nthe ticket against baselines at {ticket.sparsity:.2%} sparsity (seeds "
          f"{', '.join(map(str, ticket.info['seeds']))}; same recipe)")
    print(comparison_table(found.comparison, primary))
    print(f"verdict: {found.verdict}")


def print_summary(run: Any, info: dict[str, Any]) -> None:
    from bert_tickets.engine.training import FAILED_RULE
    from bert_tickets.metrics import display_value, format_mean_std, metric_label

    primary = info["primary_metric"]
    print(f"\n{info['method']} on {info['task']} with {info['model']} ({run.root})")
    print(f"{'level':>5}  {'sparsity':>8}  {metric_label(primary):>18}")
    for k in run.trained_levels:
        metrics = run.level_record(k)["metrics"]
        print(f"{k:>5}  {run.sparsities[k]:>8.2%}  {display_value(primary, metrics[primary]):>18.2f}")
    seeds = ", ".join(map(str, info["seeds"]))
    print(f"\nticket at sparsity {info['sparsity']:.2%} vs dense (seeds {seeds}; mean ± std; scores × 100)")
    print(f"{'metric':<24} {'ticket':>18} {'dense':>18}")
    for name, t in info["metrics"]["ticket"].items():
        d = info["metrics"]["dense"][name]
        print(f"{name:<24} {format_mean_std(name, t):>18} {format_mean_std(name, d):>18}")
    failed = {arm: info["metrics"][arm][primary].get("failed") for arm in ("ticket", "dense")}
    if any(count is not None for count in failed.values()):
        runs = len(info["seeds"])
        counts = ", ".join(f"{arm} {'not recorded' if n is None else f'{n} of {runs}'}" for arm, n in failed.items())
        print(f"failed to learn: {counts} ({FAILED_RULE})")
    print(f"{primary}: {matching_mark(info['matching'])} ({MATCHING_RULE})")
    for name, sparsity in (info.get("collapsed_matrices") or {}).items():
        print(f"COLLAPSED: {name} is {sparsity:.1%} pruned ({info['collapse_rule']}); see ticket.json")


def dashed(argv: Sequence[str]) -> list[str]:
    """Every flag in its --dash-spelling: Hugging Face's scripts write --output_dir, --repo_id, --dry_run; values are
    left alone (`--set training.max_steps=3`, `--flag=a_b`)."""
    out = []
    for token in argv:
        name, eq, value = token.partition("=")
        out.append(name.replace("_", "-") + eq + value if token.startswith("--") else token)
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill`): unwound like Ctrl-C, so it cleans what Ctrl-C cleans."""


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise Terminated


def check_launch_environment() -> None:
    """RANK and WORLD_SIZE, when set, must describe a real launch (a stray RANK=1 would silence every message)."""
    rank, size = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    whole = [v is None or (v.isascii() and v.isdigit()) for v in (rank, size)]
    if not all(whole) or int(rank or 0) >= int(size or 1) or (rank is None and int(size or 1) > 1):
        raise UserError(f"RANK={rank} and WORLD_SIZE={size} do not describe a multi-process launch (0 <= RANK < "
                        "WORLD_SIZE, both set): unset them, or start with `accelerate launch` / torchrun")


# how writers say it: the OS, safetensors (Rust's StorageFull), torch.save (PytorchStreamWriter's "file write failed")
DISK_FULL = ("No space left on device", "StorageFull", "Disk quota exceeded", "file write failed")


def disk_full(exc: BaseException | None) -> bool:
    """A full disk, however the writer reported it (OSError, safetensors' or torch's own errors), in the chain."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(exc) for text in DISK_FULL):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if bad := next((a for a in argv if not is_utf8(a)), None):  # a path that no record or card could hold
        print(f"bert-tickets: error: the argument {bad!r} is not UTF-8 text: use a name in UTF-8", file=sys.stderr)
        return 2
    args = build_parser().parse_args(dashed(argv))
    return guarded(lambda: _checked_command(args))


PATH_FLAGS = {**{d: f"--{d.replace('_', '-')}" for d in ("output_dir", "data_dir", "train_file", "validation_file",
                                                          "ticket", "study", "config", "model")},
              "spec": "the study file", "study_dir": "the study folder"}


def _checked_command(args: argparse.Namespace) -> int:
    _check_paths(args)
    return COMMANDS[args.command](args)


def _check_paths(args: argparse.Namespace) -> None:
    """Paths the command was given are not empty: "" would mean the current folder (`--dry-run ""` says its own)."""
    from bert_tickets.files import check_path_text

    for dest, label in PATH_FLAGS.items():
        if isinstance(value := getattr(args, dest, None), str):
            check_path_text(value, label)


def guarded(command: Callable[[], int]) -> int:
    """Run a command (or a local worker's API call) as the command line does: bad input is one line on stderr and
    exit 2, Ctrl-C and SIGTERM say how to resume, a full disk or a file-system error is one line."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        check_launch_environment()
    except UserError as exc:  # every process says it: which one is "main" is what is wrong
        print(f"bert-tickets: error: {exc}", file=sys.stderr)
        return 2
    main_process = is_main_process()
    previous = signal.signal(signal.SIGTERM, _terminate) if _in_main_thread() else None
    try:
        if not main_process:  # data parallel: the summary and the ticket path come once, from rank 0
            with contextlib.redirect_stdout(io.StringIO()):
                return command()
        return command()
    except UserError as exc:
        if main_process:
            print(f"bert-tickets: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"bert-tickets: {'stopped (SIGTERM)' if isinstance(exc, Terminated) else 'interrupted'}; rerun the "
              "same command to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        return _file_system_error(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _file_system_error(exc: Exception) -> int:
    """A full disk or another file-system error: one line, exit 2 (earlier results are intact); a bug re-raises."""
    if disk_full(exc):
        where = f" writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        print(f"bert-tickets: error: the disk is full (No space left on device{where}); earlier results are "
              "intact: free space and rerun the same command to resume", file=sys.stderr)
        return 2
    if not isinstance(exc, OSError):
        raise exc  # a bug: its traceback is what to report
    # the last resort for the file system (permissions, a vanished folder): one line, the path
    where = f" ({exc.filename})" if exc.filename else ""
    print(f"bert-tickets: error: {exc.strerror or exc}{where}; earlier results are intact", file=sys.stderr)
    return 2


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


COMMANDS = {"find": run_find, "evaluate": run_evaluate, "transfer": run_transfer, "push": run_push,
            "study": run_study_command, "report": run_report, "demo": run_demo}

if __name__ == "__main__":
    sys.exit(main())
