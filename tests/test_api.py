"""The Python API mirrors the commands: same settings, same run folders, and the usage guide's example runs."""

import re
from pathlib import Path

import pytest

import bert_tickets as bt
from bert_tickets.cli import main
from bert_tickets.errors import UserError


def readme_example() -> str:
    readme = (Path(__file__).parents[1] / "docs" / "usage.md").read_text()
    return re.search(r"<!-- api-example.*?-->\n```python\n(.*?)```", readme, re.S).group(1)


def test_the_usage_guide_example_runs(tiny_bert, glue_dir, tmp_path, monkeypatch):
    code = readme_example()
    code = code.replace('glue = "../shared/data/glue"', f"glue = {str(glue_dir)!r}")
    code = re.sub(r"recipe = dict\(.*\)", f"recipe = dict(model={tiny_bert!r}, max_steps=2, batch_size=8, "
                  f"max_length=32, output_dir={str(tmp_path / 'runs')!r})", code)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (the README's own example)
    ticket, on_mrpc, matrix = scope["ticket"], scope["on_mrpc"], scope["matrix"]
    assert ticket.info["task"] == "rte" and ticket.info["seeds"] == [0, 1]
    assert on_mrpc.info["task"] == "mrpc" and on_mrpc.info["method"] == "ticket"
    assert (matrix.folder / "matrix.csv").is_file() and set(matrix.table["cells"]["rte"]) == {"rte", "mrpc"}
    assert (Path(scope["release"]) / "model.safetensors").is_file()


def test_python_and_the_shell_share_a_run(tiny_bert, glue_dir, tmp_path, capsys):
    ticket = bt.find_ticket("rte", 0.2, method="magnitude", model=tiny_bert, data_dir=str(glue_dir),
                            output_dir=str(tmp_path), max_steps=2, training__batch_size=8,
                            settings={"data.max_length": 32})
    assert main(["find", "--task", "rte", "--sparsity", "0.2", "--method", "magnitude", "--model", tiny_bert,
                 "--data-dir", str(glue_dir), "--output-dir", str(tmp_path), "--max-steps", "2",
                 "--batch-size", "8", "--max-length", "32"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(ticket.path)


def test_unknown_settings_and_missing_repo_ids_are_errors(tmp_path):
    with pytest.raises(UserError, match="unknown setting 'max_stpes'"):
        bt.find_ticket("rte", 0.2, max_stpes=2)
    with pytest.raises(UserError, match="push needs repo_id"):
        bt.push(tmp_path)
    assert set(bt.API) <= set(dir(bt.api))


def test_the_api_functions_survive_importing_every_module():
    """A function named like a submodule would be replaced by the module once something imports it."""
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(bt.__path__, "bert_tickets."):
        if "evaluate_modules" not in module.name:
            importlib.import_module(module.name)
    for name in bt.API:
        assert callable(getattr(bt, name)) and getattr(bt, name).__module__ == "bert_tickets.api", name


def test_find_with_baselines_is_a_small_study_through_the_one_runner(tiny_bert, glue_dir, tmp_path):
    """`find --baselines` plans its run and a baseline job each, and the study's runner runs them: with two local
    workers the ticket and the masks made from θ0 alone share the first round, what takes the ticket's mask the
    second; the comparison is the one a single process writes."""
    import json

    recipe = dict(model=tiny_bert, data_dir=str(glue_dir), max_steps=2, training__batch_size=8, rate=0.2,
                  settings={"data.max_length": 32})
    alone = bt.find_ticket("rte", 0.2, baselines=["random", "reinit"], output_dir=str(tmp_path / "alone"), **recipe)
    shared = bt.find_ticket("rte", 0.2, baselines=["random", "reinit"], output_dir=str(tmp_path / "shared"),
                            workers=2, **recipe)
    logs = {p.name: p.read_text() for p in next((tmp_path / "shared").rglob("workers")).glob("*.log")}
    assert set(logs) == {"tickets_0.log", "tickets_1.log", "runs_0.log"}
    assert "worker job: rte imp at 20%" in logs["tickets_0.log"] and "rte random at 20%" in logs["tickets_1.log"]
    assert "worker job: rte reinit at 20%" in logs["runs_0.log"] and "reinit" not in logs["tickets_0.log"]

    def rows(ticket) -> list:
        return [(r["method"], r["metrics"]) for r in json.loads((ticket.path / "comparison.json").read_text())["rows"]]

    assert rows(shared) == rows(alone) and [m for m, _ in rows(alone)] == ["dense", "imp", "random", "reinit"]
