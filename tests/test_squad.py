import json
import re
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from bert_tickets import metrics
from bert_tickets.config import load_config
from bert_tickets.engine.run import ImpRun
from bert_tickets.errors import UserError
from bert_tickets.tasks import get_task
from bert_tickets.tasks.squad import best_answers

FILLER = ("The committee met again in the spring. Several reports were read aloud and filed. "
          "Nobody objected to the minutes of the previous meeting. ")
PARAGRAPHS = [
    ("Denver Broncos", FILLER + "The Denver Broncos defeated the Carolina Panthers to win Super Bowl 50. " + FILLER,
     [("Who won Super Bowl 50?", "Denver Broncos"), ("Whom did Denver beat?", "the Carolina Panthers")]),
    ("Oxygen", "Oxygen is a chemical element with symbol O and atomic number 8. " + FILLER * 2,
     [("What is the atomic number of oxygen?", "8"), ("What is the symbol of oxygen?", "O")]),
    ("Nile", FILLER * 2 + "The Nile, at 6,650 km, is often called the longest river in the world.",
     [("How long is the Nile?", "6,650 km")]),
]


def _word_at(context: str, answer: str) -> int:
    return re.search(rf"\b{re.escape(answer)}\b", context).start()


def write_squad(folder: Path) -> Path:
    """train-v1.1.json and dev-v1.1.json in the official SQuAD v1.1 schema."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        data = []
        for i, (title, context, qas) in enumerate(PARAGRAPHS):
            copies = 1 if name.startswith("train") else 3  # dev questions have three gold answers
            items = [{"id": f"{name[:3]}{i}{j}", "question": q,
                      "answers": [{"text": a, "answer_start": _word_at(context, a)}] * copies}
                     for j, (q, a) in enumerate(qas)]
            data.append({"title": title, "paragraphs": [{"context": context, "qas": items}]})
        (folder / name).write_text(json.dumps({"version": "1.1", "data": data}))
    return folder


def prepared(minilm_path: str, folder: Path, max_length: int = 48, stride: int = 16):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = load_config(None, {"data.task": "squad", "data.data_dir": str(folder), "data.max_length": max_length,
                                "data.doc_stride": stride})
    return tokenizer, get_task("squad").prepare(tokenizer, config.data)


def test_answers_survive_tokenization_and_windowing(minilm_path, tmp_path):
    tokenizer, data = prepared(minilm_path, write_squad(tmp_path))
    answers = {a for _, _, qas in PARAGRAPHS for _, a in qas}
    inside = outside = 0
    for feature in data.train:
        start, end = feature["start_positions"], feature["end_positions"]
        assert len(feature["input_ids"]) <= 48
        if start == end == 0:
            outside += 1
            continue
        inside += 1
        span = tokenizer.decode(feature["input_ids"][start: end + 1])
        assert "".join(span.split()) in {"".join(a.lower().split()) for a in answers}  # decoding spaces out ","
    assert inside >= 5 and outside > 0  # every answer found in some window; long contexts have windows without


def test_the_best_span_maps_back_to_the_original_text(minilm_path, tmp_path):
    tokenizer, data = prepared(minilm_path, write_squad(tmp_path))
    extra = data.extras["validation"]
    examples, features = extra["examples"], extra["features"]
    n, width = len(features), max(len(o) for o in features["offset_mapping"])
    starts, ends = np.zeros((n, width)), np.zeros((n, width))
    for f, (example, offsets) in enumerate(zip(features["example_index"], features["offset_mapping"], strict=True)):
        ex = examples[example]
        a_start = ex["answer_starts"][0]
        a_end = a_start + len(ex["answer_texts"][0])
        for k, (s, e) in enumerate(offsets):  # put the peak on the gold span wherever the window holds it
            if s == a_start:
                starts[f, k] = 10.0
            if e == a_end and s >= a_start:
                ends[f, k] = 10.0
    predictions = best_answers(examples, features, starts, ends, max_answer_length=30)
    assert predictions == {ex["id"]: ex["answer_texts"][0] for ex in examples}  # original casing and commas
    scores = get_task("squad").score("validation", {"start_logits": starts, "end_logits": ends}, data)
    assert scores == {"exact_match": 1.0, "f1": 1.0}
    short = best_answers(examples, features, starts, ends, max_answer_length=1)
    assert short[examples[4]["id"]] != "6,650 km"  # a 4-token answer is longer than the limit


def test_scores_by_hand():
    scores = metrics.squad_scores({"q1": "Denver Broncos", "q2": "Panthers"},
                                  {"q1": ["Denver Broncos"], "q2": ["the Carolina Panthers"], "q3": ["x"]})
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 * 0.5 * 1 / 1.5 + 0) / 3)


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", r"dev-v1.1.json:1: not valid JSON"),
    (b'{"data": [{"title": "t"}]}', "not in the SQuAD v1.1 schema"),
    (b'{"data": []}', "no questions"),
    (b'{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q", "answers": '
     b'[{"text": "abc", "answer_start": 2}]}]}]}]}', "answer_start is outside its context"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_malformed_squad_files(tmp_path, content, message):
    folder = write_squad(tmp_path)
    (folder / "dev-v1.1.json").write_bytes(content)
    with pytest.raises(UserError, match=message):
        get_task("squad").load_raw(str(folder))


def test_imp_on_squad_with_a_tiny_model(tiny_bert, tmp_path):
    settings = {"model.name": tiny_bert, "data.task": "squad", "data.data_dir": str(write_squad(tmp_path)),
                "output_dir": str(tmp_path / "runs"), "pruning.sparsity": 0.1, "training.max_steps": 3,
                "data.max_length": 64, "data.doc_stride": 16}
    config = load_config(None, settings, recipe=get_task("squad").recipe)
    assert (config.training.batch_size, config.training.learning_rate) == (16, 3e-5)  # the paper's SQuAD recipe
    ticket = ImpRun(config).run()
    assert set(ticket.info["metrics"]["ticket"]) == {"exact_match", "f1"} and ticket.info["primary_metric"] == "f1"
    assert ticket.sparsity == pytest.approx(0.1, abs=1e-3)
