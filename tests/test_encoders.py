"""Encoders beyond BERT, RoBERTa and DistilBERT, end to end on tiny random configs: find (two IMP levels), evaluate
on another task, push; the prunable set is each family's attention and feed-forward matrices."""

import pytest
from conftest import TINY, _save_tiny

from bert_tickets import Ticket
from bert_tickets.cli import main
from bert_tickets.release.hub import verify_export


def _config(family: str):
    from transformers import DebertaV2Config, ElectraConfig, ModernBertConfig

    size = {k: TINY[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                 "intermediate_size", "max_position_embeddings")}
    if family == "deberta-v2":
        return DebertaV2Config(**size, relative_attention=True, pos_att_type=["p2c", "c2p"], pad_token_id=0)
    if family == "electra":
        return ElectraConfig(**size, embedding_size=16)
    return ModernBertConfig(**size, pad_token_id=0, bos_token_id=101, eos_token_id=102, cls_token_id=101,
                            sep_token_id=102, global_attn_every_n_layers=2, local_attention=16)


# family -> the matrices a layer prunes (names relative to the encoder)
MATRICES = {"deberta-v2": 6, "electra": 6, "modernbert": 4}


@pytest.mark.parametrize("family", list(MATRICES))
def test_an_encoder_family_finds_evaluates_and_releases_a_ticket(family, glue_dir, tmp_path, minilm_path, capsys):
    model = _save_tiny(tmp_path / family, _config(family), minilm_path)
    common = ["--model", model, "--data-dir", str(glue_dir), "--output-dir", str(tmp_path / "runs"), "--max-steps",
              "2", "--batch-size", "8", "--max-length", "32"]
    assert main(["find", "--task", "sst2", "--sparsity", "0.4", "--rate", "0.2", *common]) == 0
    ticket = Ticket.load(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(ticket.mask) == MATRICES[family] * TINY["num_hidden_layers"]  # every layer's matrices, no pooler
    assert abs(ticket.sparsity - 0.4) < 1e-3
    assert main(["evaluate", "--ticket", str(ticket.path), "--task", "rte", *common]) == 0
    assert Ticket.load(capsys.readouterr().out.strip().splitlines()[-1]).mask.keys() == ticket.mask.keys()
    out = tmp_path / "release"
    assert main(["push", "--ticket", str(ticket.path), "--repo-id", f"someone/{family}", "--dry-run", str(out)]) == 0
    assert verify_export(out)["pruned_nonzero"] == 0
