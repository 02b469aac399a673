"""BERTScore end to end with a tiny randomly initialised BERT saved to a temp dir.

The expected values are computed here straight from the encoder's hidden states (cosine
matching by hand), independently of the bert-score package the metric calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("bert_score")
transformers = pytest.importorskip("transformers")

from fedmllm.metrics import build_metrics, compute_scalars  # noqa: E402
from fedmllm.metrics.bertscore import BERTScore, default_layer  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = SPECIALS + [
    "the", "cat", "sat", "on", "mat", "a", "dog", "no", "acute", "findings",
    "small", "left", "effusion", ".", ",",
]  # fmt: skip
LAYER = 2


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_bert")
    (path / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = transformers.BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _embed(path: Path, text: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-norm hidden states of layer LAYER for [CLS] text [SEP], and the weight mask."""
    tok = transformers.BertTokenizer.from_pretrained(path)
    model = transformers.BertModel.from_pretrained(path).eval()
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states[LAYER][0].double()
    special = torch.isin(ids[0], torch.tensor([tok.cls_token_id, tok.sep_token_id]))
    return torch.nn.functional.normalize(hidden, dim=-1), (~special).double()


def by_hand(path: Path, cand: str, ref: str) -> tuple[float, float, float]:
    """Greedy cosine matching as in the BERTScore paper, with bert-score's handling of the
    special tokens: [CLS]/[SEP] may be matched but carry no weight."""
    c, c_w = _embed(path, cand)
    r, r_w = _embed(path, ref)
    sim = c @ r.T
    p = float((sim.max(dim=1).values * c_w).sum() / c_w.sum())
    rec = float((sim.max(dim=0).values * r_w).sum() / r_w.sum())
    return p, rec, 2 * p * rec / (p + rec)


def test_bertscore_matches_hand_computation(tiny_bert: Path) -> None:
    # Prepare
    preds = ["the cat sat on the mat", "no acute findings ."]
    targets = ["a cat sat on a mat", "small left effusion ."]
    metric = BERTScore(str(tiny_bert), num_layers=LAYER, device="cpu")
    # Execute
    metric.update(preds, targets)
    result = {k: v.item() for k, v in metric.compute().items()}
    # Assert
    expected = [by_hand(tiny_bert, c, r) for c, r in zip(preds, targets, strict=True)]
    for i, key in enumerate(("bertscore_p", "bertscore_r", "bertscore_f")):
        assert metric.last_sample_scores[key] == pytest.approx([e[i] for e in expected], abs=1e-5)
        assert result[key] == pytest.approx(sum(e[i] for e in expected) / 2, abs=1e-5)
    assert by_hand(tiny_bert, preds[0], preds[0]) == pytest.approx((1.0, 1.0, 1.0), abs=1e-6)


def test_bertscore_best_reference_empty_prediction_and_rescaling(tiny_bert: Path) -> None:
    # Baseline b = (0.5, 0.25, 0.4) for layer 2: rescaled s' = (s - b) / (1 - b).
    baseline = tiny_bert / "baseline.tsv"
    baseline.write_text("LAYER,P,R,F\n0,0.1,0.1,0.1\n1,0.2,0.2,0.2\n2,0.5,0.25,0.4\n")
    b = torch.tensor([0.5, 0.25, 0.4], dtype=torch.float64)
    refs = ["a dog sat", "the cat sat on the mat"]
    metric = BERTScore(
        str(tiny_bert), LAYER, rescale_with_baseline=True, baseline_path=str(baseline), device="cpu"
    )
    # Execute: one prediction with two references, one empty prediction.
    metric.update(["the cat sat on a mat", ""], [refs, "no acute findings ."])
    # Assert: each of P, R, F takes its best reference; the empty prediction is raw 0.
    per_ref = torch.tensor([by_hand(tiny_bert, "the cat sat on a mat", r) for r in refs])
    raw = torch.stack([per_ref.max(dim=0).values.double(), torch.zeros(3, dtype=torch.float64)])
    expected = (raw - b) / (1 - b)
    got = torch.tensor(
        [metric.last_sample_scores[k] for k in ("bertscore_p", "bertscore_r", "bertscore_f")],
        dtype=torch.float64,
    ).T
    assert torch.allclose(got, expected, atol=1e-5)


def test_bertscore_through_the_registry_and_batches_merge(tiny_bert: Path) -> None:
    preds = ["the cat sat on the mat", "no acute findings .", "small effusion"]
    targets = ["a cat sat on a mat", "small left effusion .", "left effusion"]
    options = {"bertscore": {"model": str(tiny_bert), "num_layers": LAYER, "device": "cpu"}}
    whole = build_metrics(["bertscore"], options)
    split = build_metrics(["bertscore"], options)
    whole.update(preds, targets)
    split.update(preds[:1], targets[:1])
    split.update(preds[1:], targets[1:])
    assert compute_scalars(split) == pytest.approx(compute_scalars(whole), abs=1e-6)


def test_bertscore_never_downloads_and_names_what_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_encoder"
    metric = BERTScore(str(missing), num_layers=2, device="cpu")
    with pytest.raises(FileNotFoundError, match="local path"):
        metric.update(["a"], ["a"])
    with pytest.raises(ValueError, match="num_layers"):
        BERTScore(str(tmp_path))  # a local encoder has no tuned layer to fall back on
    assert default_layer("/models/roberta-large") == 17  # bert-score's table, by directory name
    with pytest.raises(FileNotFoundError, match="baseline"):
        BERTScore(str(tmp_path), 2, rescale_with_baseline=True, baseline_path=str(missing))
