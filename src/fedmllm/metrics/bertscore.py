"""BERTScore (Zhang et al., 2020) through the ``bert-score`` package, offline by default.

BERTScore embeds prediction and reference with a contextual encoder (the hidden states of
layer ``num_layers``), matches every token to its most similar token on the other side by
cosine similarity, and averages: precision over the prediction's tokens, recall over the
reference's, F their harmonic mean. No idf weighting (idf needs statistics of the whole test
set, which summed per-batch states cannot merge exactly).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fedmllm.metrics._inputs import Target, check_pairs, references
from fedmllm.metrics.base import TextMetric

log = logging.getLogger(__name__)

KEYS = ("bertscore_p", "bertscore_r", "bertscore_f")

# One encoder per (path, layer, device), shared by every client's metric instance.
_SCORERS: dict[tuple[str, int, str], Any] = {}


def resolve_encoder(model: str, allow_download: bool = False) -> Path:
    """A local directory holding the encoder: ``model`` itself, or its Hugging Face cache entry.

    Args:
        model: A local directory or a hub id (e.g. ``roberta-large``).
        allow_download: Fetch a hub id that is not cached yet. Off by default: nothing is
            downloaded unless asked for.

    Returns:
        The directory to load from.

    Raises:
        FileNotFoundError: If ``model`` is neither a directory nor (without download) cached.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=not allow_download))
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"BERTScore encoder {model!r} is neither a local directory nor in the local Hugging "
            "Face cache; pass a local path (or allow_download=true to fetch a hub id)"
        ) from exc


def default_layer(model: str) -> int | None:
    """bert-score's tuned layer for a known model name (or the last path component), else None."""
    from bert_score.utils import model2layers

    return model2layers.get(model, model2layers.get(Path(model).name))


def load_baseline(path: str | Path, num_layers: int) -> torch.Tensor:
    """The ``(P, R, F)`` baseline of layer ``num_layers`` from a bert-score baseline file.

    The file is CSV with the header ``LAYER,P,R,F`` and one row per layer (bert-score ships
    them under ``bert_score/rescale_baseline/<lang>/<model>.tsv``).

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If it has no row for the layer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BERTScore baseline file {path} does not exist")
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if int(row["LAYER"]) == num_layers:
                return torch.tensor([float(row[k]) for k in ("P", "R", "F")], dtype=torch.float64)
    raise ValueError(f"BERTScore baseline file {path} has no row for layer {num_layers}")


def bundled_baseline(model: str, lang: str) -> Path:
    """Path of bert-score's own baseline file for a hub model name and language."""
    import bert_score

    return Path(bert_score.__file__).parent / "rescale_baseline" / lang / f"{Path(model).name}.tsv"


def _scorer(path: Path, num_layers: int, device: str) -> Any:
    key = (str(path), num_layers, device)
    if key not in _SCORERS:
        from bert_score import BERTScorer

        log.info("loading BERTScore encoder %s (layer %d) on %s", path, num_layers, device)
        scorer = BERTScorer(model_type=str(path), num_layers=num_layers, device=device)
        tok = scorer._tokenizer
        # A tokenizer saved without model_max_length reports ~1e30, which recent tokenizers
        # reject as a truncation length; the encoder's position table is the real limit.
        if tok.model_max_length > 1_000_000:
            tok.model_max_length = scorer._model.config.max_position_embeddings
        _SCORERS[key] = scorer
    return _SCORERS[key]


class BERTScore(TextMetric):
    """Mean BERTScore precision, recall and F over samples.

    Args:
        model: Encoder as a local directory or a hub id that is already in the local Hugging
            Face cache (``allow_download`` fetches it otherwise).
        num_layers: Which hidden layer to use; default bert-score's tuned layer for a known
            model name (e.g. 17 for ``roberta-large``), required for other encoders.
        rescale_with_baseline: Rescale each score as ``(s - b) / (1 - b)`` with the layer's
            baseline ``b``, so that unrelated sentences score about 0.
        baseline_path: Baseline file (CSV ``LAYER,P,R,F``); default bert-score's bundled file
            for ``model``'s name and ``lang``.
        lang: Language of the bundled baseline.
        batch_size: Sentences per encoder batch.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
        allow_download: See :func:`resolve_encoder`.
        **kwargs: Passed to :class:`torchmetrics.Metric`.

    An empty prediction (or reference) scores 0 before rescaling, bert-score's own rule. With
    several references each of P, R and F takes its best reference, as bert-score does.
    ``compute()`` returns ``{"bertscore_p", "bertscore_r", "bertscore_f"}``; per sample the
    same three keys.
    """

    expensive = True

    score_sum: torch.Tensor
    total: torch.Tensor

    def __init__(
        self,
        model: str,
        num_layers: int | None = None,
        rescale_with_baseline: bool = False,
        baseline_path: str | None = None,
        lang: str = "en",
        batch_size: int = 32,
        device: str | None = None,
        allow_download: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        if not model:
            raise ValueError("BERTScore needs an encoder: a local path or a cached hub id")
        self.model = model
        self.num_layers = num_layers if num_layers is not None else default_layer(model)
        if self.num_layers is None:
            raise ValueError(
                f"BERTScore: no tuned layer known for {model!r}; set "
                "federation.metric_options.bertscore.num_layers=<n> "
                "(bert-score uses e.g. 17 for roberta-large, 9 for bert-base-uncased)"
            )
        self.baseline: torch.Tensor | None = None
        if rescale_with_baseline:
            source = baseline_path or bundled_baseline(model, lang)
            self.baseline = load_baseline(source, self.num_layers)
        self.batch_size = batch_size
        self.device_name = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.allow_download = allow_download
        self.add_sums(score_sum=torch.zeros(3, dtype=torch.float64), total=0)

    def _raw_scores(self, cands: list[str], refs: list[str]) -> torch.Tensor:
        """``(n, 3)`` raw P, R, F of aligned pairs; pairs with an empty side are 0."""
        out = torch.zeros(len(cands), 3, dtype=torch.float64)
        keep = [
            i for i, (c, r) in enumerate(zip(cands, refs, strict=True)) if c.strip() and r.strip()
        ]
        if keep:
            path = resolve_encoder(self.model, self.allow_download)
            scorer = _scorer(path, int(self.num_layers), self.device_name)  # type: ignore[arg-type]
            p, r, f = scorer.score(
                [cands[i] for i in keep], [refs[i] for i in keep], batch_size=self.batch_size
            )
            out[keep] = torch.stack([p, r, f], dim=1).double()
        return out

    def update(self, preds: Sequence[str], targets: Sequence[Target]) -> None:
        """Score one batch.

        Args:
            preds: Generated texts.
            targets: Reference text(s), one entry per prediction.
        """
        check_pairs(preds, targets)
        groups = [references(t) for t in targets]
        cands = [p for p, g in zip(preds, groups, strict=True) for _ in g]
        raw = self._raw_scores(cands, [r for g in groups for r in g])
        best, start = [], 0
        for g in groups:
            best.append(raw[start : start + len(g)].max(dim=0).values)
            start += len(g)
        scores = torch.stack(best) if best else torch.zeros(0, 3, dtype=torch.float64)
        if self.baseline is not None:
            scores = (scores - self.baseline) / (1 - self.baseline)
        self.score_sum += scores.sum(dim=0).to(self.score_sum.device)
        self.total += len(preds)
        self.last_sample_scores = {k: scores[:, i].tolist() for i, k in enumerate(KEYS)}

    def compute(self) -> dict[str, torch.Tensor]:
        """Mean P, R and F over every sample seen since the last reset (0 before any update)."""
        means = (self.score_sum / self.total.clamp_min(1)).float()
        return {k: means[i] for i, k in enumerate(KEYS)}
