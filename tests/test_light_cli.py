"""`bert-tickets --help` and a mistyped flag answer before torch, transformers or datasets load (seconds saved on
every typo), and the answers are the same ones the full parser gives."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets", "safetensors", "accelerate", "evaluate", "peft")

PROBE = """
import sys
from bert_tickets.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
loaded = sorted(name for name in {heavy!r} if name in sys.modules)
print("LOADED=" + ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True,
                          timeout=120)


def loaded(done: subprocess.CompletedProcess) -> str:
    return next(line for line in done.stderr.splitlines() if line.startswith("LOADED="))


@pytest.mark.parametrize("argv", [["--help"], ["find", "--help"], ["evaluate", "--help"], ["transfer", "--help"],
                                  ["study", "--help"], ["push", "--help"]])
def test_help_loads_no_heavy_library(argv):
    done = run_cli(*argv)
    assert done.returncode == 0, done.stderr
    assert "usage: " in done.stdout
    assert loaded(done) == "LOADED="


def test_the_help_still_lists_every_method_task_setting_and_preset():
    from bert_tickets.config import setting_specs
    from bert_tickets.methods import METHODS
    from bert_tickets.studies.spec import spec_names
    from bert_tickets.tasks import TASKS

    find = run_cli("find", "--help").stdout
    unwrapped = "".join(find.split())  # argparse wraps lines at spaces and hyphens
    assert all(f"{name}:" in unwrapped for name in METHODS)
    assert all(name in unwrapped for name in TASKS)
    assert all(f"--{spec.flag.replace('_', '-')}" in find for spec in setting_specs() if spec.flag not in
               ("task", "sparsity"))
    assert all(name in "".join(run_cli("study", "--help").stdout.split()) for name in spec_names())


@pytest.mark.parametrize("argv, says", [
    (["find", "--task", "sst2", "--sparsity", "half"], "invalid float value"),
    (["find", "--task", "sst2", "--sparsity", "0.5", "--bogus"], "unrecognized arguments: --bogus"),
    (["find", "--task", "sst2", "--sparsity", "0.5", "--method", "nope"], "invalid choice: 'nope'"),
    (["evaluate", "--task", "sst2", "--ticket", "t", "--rate", "0.3"], "--rate"),
])
def test_a_bad_flag_is_one_line_and_exit_2_before_torch(argv, says):
    done = run_cli(*argv)
    assert done.returncode == 2
    said = [line for line in done.stderr.splitlines() if not line.startswith("LOADED=")]
    assert len(said) == 1 and says in said[0], done.stderr
    assert loaded(done) == "LOADED="
