"""A task is one class (or one record of a task family) and one registry line, added here from outside the package
as a user's own code would: `find` runs on it, `--help` lists it, and its own numeric data settings are checked
by the domains its fields declare (not by a hand-written list in the config)."""

import json
import random
from pathlib import Path

import pytest
from conftest import write_tsv

from bert_tickets.cli import build_parser, main
from bert_tickets.config import DOMAINS, task_config
from bert_tickets.errors import UserError
from bert_tickets.tasks import TASKS, GlueTask, register_task
from bert_tickets.tasks.squad import SquadData

YES_NO = GlueTask("yesno", "boolq", "BoolQ", ("question", "passage"), ("question", "passage"), "label",
                  ("False", "True"), ("accuracy",), "accuracy")


@pytest.fixture()
def yes_no():
    register_task(YES_NO)  # the registry line
    yield YES_NO
    TASKS.pop(YES_NO.name)


def write_yes_no(root: Path) -> Path:
    rng = random.Random(0)
    for split, n in (("train", 32), ("dev", 12)):
        rows = [[f"is it {rng.choice(['red', 'blue'])}", f"the sky is {rng.choice(['red', 'blue'])}",
                 rng.choice(["False", "True"])] for _ in range(n)]
        write_tsv(root / "BoolQ" / f"{split}.tsv", ["question", "passage", "label"], rows)
    return root


def test_a_task_registered_from_outside_runs_and_is_listed(yes_no, tiny_bert, tmp_path, capsys):
    data = write_yes_no(tmp_path / "data")
    assert main(["find", "--task", "yesno", "--sparsity", "0.2", "--model", tiny_bert, "--data-dir", str(data),
                 "--output-dir", str(tmp_path / "runs"), "--max-steps", "2", "--batch-size", "8",
                 "--max-length", "32"]) == 0
    ticket = Path(capsys.readouterr().out.strip().splitlines()[-1])
    info = json.loads((ticket / "ticket.json").read_text())
    assert info["task"] == "yesno" and set(info["metrics"]["ticket"]) == {"accuracy"}
    find = next(a for a in build_parser()._subparsers._group_actions[0].choices["find"]._actions
                if "--task" in a.option_strings)
    assert "yesno" in find.help


def test_a_task_name_is_registered_once(yes_no):
    with pytest.raises(UserError, match="needs a new lower-case name"):
        register_task(YES_NO)
    with pytest.raises(UserError, match="needs a new lower-case name"):
        register_task(GlueTask("SST2", "sst2", "SST-2", ("sentence",), ("sentence",), "label", ("0", "1"),
                               ("accuracy",), "accuracy"))


def test_a_tasks_own_settings_are_checked_by_the_domains_its_fields_declare():
    declared = {f"data.{name}" for name in SquadData.__dataclass_fields__}
    assert declared <= set(DOMAINS)  # from the fields' metadata: the config lists none of them by hand
    with pytest.raises(UserError, match=r"data.doc_stride must be in \[1, 65536\], got 0"):
        task_config("squad", None, {"data.doc_stride": 0}).validate()
