"""The federated asymmetric translation scheme (docs/modality.md, "Cross-modal translation").

Every client holds images of its own modality only. Per round:

1. The server sends the global translator ``G`` and the global discriminator ``D_m`` of every
   modality to each client.
2. Client k, with image ``x`` of modality ``s``, its text ``c`` and a target ``t ≠ s`` that
   shows the same organ, computes the forward translation ``x̃ = G(x, s→t, c)`` into another
   hospital's modality, and the *backward* translation ``x̂ = G(x̃, t→s, c)`` back into its own.
   Only the backward direction has a target the client holds (``x`` itself), so it carries
   the pixel loss; the forward direction is shaped through the cycle and through the received,
   frozen discriminators (``D_t`` is trained on real ``t`` images only at the holders of ``t``):

       L_G = λ_rec·|x̂ − x|₁ + λ_id·|G(x, s→s, c) − x|₁ + BCE(D_t(x̃), 1) + BCE(D_s(x̂), 1)

   Client k then updates its copies of the discriminators with what it has:
   ``D_s`` on real vs backward, ``BCE(D_s(x), 1) + BCE(D_s(x̂), 0)``, and each target's ``D_t``
   on its forward translations as fakes, ``BCE(D_t(x̃), 0)`` (only the holders of ``t`` can
   show ``D_t`` a real ``t``; without the others' fakes ``D_t`` would never see an image that
   still looks like another modality, and would not push the forward direction).
3. After its local steps, the client scores its translator with its own discriminator (the
   *discriminator quality score*, :func:`quality_score`) and sends ``G``, the discriminators
   it trained and the score.
4. The server averages ``G`` over all clients with weights ``n_k·q_k / Σ_j n_j·q_j``
   (:func:`score_weights`) and each ``D_m`` over the clients that trained it, weighted by the
   number of images (real and fake) each showed it.

No image and no translation leaves a client; only network weights and one scalar per client.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedmllm.aggregators.functional import weighted_mean
from fedmllm.translation.models import PatchDiscriminator, Translator, to_gray_tensor
from fedmllm.translation.settings import (
    WEIGHTINGS,
    TranslationConfig,
    TranslationItem,
    TranslationResult,
)
from fedmllm.types import state_nbytes


def score_weights(
    sizes: Sequence[int],
    scores: Sequence[float | None],
    weighting: str = "score",
    floor: float = 0.05,
) -> list[float]:
    """Aggregation weights of the clients' translators.

    ``score``: ``w_k = n_k·q̄_k / Σ_j n_j·q̄_j`` with ``q̄_k = min(1, max(floor, q_k))`` (a client
    without a score, i.e. without a translatable image, gets ``q̄_k = floor``). ``uniform``:
    ``w_k = n_k / Σ_j n_j``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r} is unknown; use one of {WEIGHTINGS}")
    if len(sizes) != len(scores) or not sizes:
        raise ValueError(f"need one score per client, got {len(sizes)} sizes, {len(scores)} scores")
    if weighting == "uniform":
        raw = [float(n) for n in sizes]
    else:
        raw = [
            n * min(1.0, max(floor, floor if q is None else q))
            for n, q in zip(sizes, scores, strict=True)
        ]
    total = sum(raw)
    if total <= 0:
        raise ValueError(f"client sizes {list(sizes)} sum to zero: no translator to average")
    return [w / total for w in raw]


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def _draw_targets(items: Sequence[TranslationItem], rng: np.random.Generator) -> list[str | None]:
    return [str(rng.choice(it.targets)) if it.targets else None for it in items]


def _rows_by(tags: Sequence[str | None]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, t in enumerate(tags):
        if t is not None:
            out.setdefault(t, []).append(i)
    return out


def cycle(
    gen: Translator, items: Sequence[TranslationItem], targets: Sequence[str | None]
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, list[int]]:
    """Real images, forward and backward translations of the rows that have a target."""
    x = to_gray_tensor([it.image for it in items])
    rows = [i for i, t in enumerate(targets) if t is not None]
    if not rows:
        return x, None, None, rows
    src = [items[i].modality for i in rows]
    tgt = [str(targets[i]) for i in rows]
    texts = [items[i].text for i in rows]
    fwd = gen(x[rows], src, tgt, texts)
    back = gen(fwd, tgt, src, texts)
    return x, fwd, back, rows


def local_steps(cfg: TranslationConfig, n_items: int) -> int:
    """``min(local_steps, ceil(max_epochs·n / batch_size))``, at least 1."""
    return max(1, min(cfg.local_steps, math.ceil(cfg.max_epochs * n_items / cfg.batch_size)))


def local_update(
    gen: Translator,
    local_discs: dict[str, PatchDiscriminator],
    received_discs: Mapping[str, PatchDiscriminator],
    items: Sequence[TranslationItem],
    cfg: TranslationConfig,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The local steps of one client (step 2 of the module docstring), in place.

    Args:
        gen: The client's copy of the global translator (trained).
        local_discs: The client's copies of the global discriminators, one per modality
            (trained: its own modality's on real vs backward translations, a target's on the
            forward translations into it, as fakes).
        received_discs: The global discriminators (frozen, not modified): the generator's
            adversarial terms use them.
        items: The client's training images.
        cfg: Hyper-parameters.
        rng: The client's random stream (batches and targets).

    Returns:
        ``steps``, mean losses, and ``disc_images``: per modality, the images (real and fake)
        its discriminator was trained on, the server's weight for it.
    """
    for d in received_discs.values():
        d.requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    d_params = [p for d in local_discs.values() for p in d.parameters()]
    opt_d = torch.optim.Adam(d_params, lr=cfg.lr, betas=(0.5, 0.999))
    sums = {"loss_g": 0.0, "loss_d": 0.0, "loss_rec": 0.0}
    fed: dict[str, int] = {}
    steps = local_steps(cfg, len(items))
    for _ in range(steps):
        pick = rng.choice(len(items), size=min(cfg.batch_size, len(items)), replace=False)
        batch = [items[i] for i in pick]
        targets = _draw_targets(batch, rng)
        x, fwd, back, rows = cycle(gen, batch, targets)
        src_all = [it.modality for it in batch]
        idt = gen(x, src_all, src_all, [it.text for it in batch])
        loss = cfg.lambda_id * (idt - x).abs().mean()
        rec = torch.zeros(())
        loss_d = torch.zeros(())
        if rows:
            assert fwd is not None and back is not None
            rec = (back - x[rows]).abs().mean()
            loss = loss + cfg.lambda_rec * rec
            by_target = _rows_by([targets[i] for i in rows])
            by_source = _rows_by([batch[i].modality for i in rows])
            for t, sub in by_target.items():
                loss = loss + _bce(received_discs[t](fwd[sub]), True) * len(sub) / len(rows)
            for s, sub in by_source.items():
                loss = loss + _bce(received_discs[s](back[sub]), True) * len(sub) / len(rows)
            # Discriminators: own modality real vs backward, targets' on forward fakes.
            for s, sub in by_source.items():
                d = local_discs[s]
                real = x[[rows[j] for j in sub]]
                loss_d = loss_d + _bce(d(real), True) + _bce(d(back[sub].detach()), False)
                fed[s] = fed.get(s, 0) + 2 * len(sub)
            for t, sub in by_target.items():
                loss_d = loss_d + _bce(local_discs[t](fwd[sub].detach()), False)
                fed[t] = fed.get(t, 0) + len(sub)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if rows:
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        sums["loss_g"] += float(loss.detach())
        sums["loss_d"] += float(loss_d.detach())
        sums["loss_rec"] += float(rec.detach())
    for d in received_discs.values():
        d.requires_grad_(True)
    return {"steps": steps, **{k: v / steps for k, v in sums.items()}, "disc_images": fed}


@torch.no_grad()
def quality_score(
    gen: Translator,
    own_discs: Mapping[str, PatchDiscriminator],
    items: Sequence[TranslationItem],
    limit: int = 64,
) -> float | None:
    """The discriminator quality score ``q_k`` of a client's translator.

    The mean, over the first ``limit`` of the client's images that have a target (target:
    the first of ``targets``) and over every patch, of ``sigmoid(D_s(x̂))``: the probability
    the client's own discriminator of modality ``s`` gives to the backward translation
    ``x̂ = G(G(x, s→t), t→s)`` being a real image of ``s``. ``None`` when no image has a target.
    """
    chosen = [it for it in items if it.targets and it.modality in own_discs][:limit]
    if not chosen:
        return None
    _x, _fwd, back, rows = cycle(gen, chosen, [it.targets[0] for it in chosen])
    assert back is not None
    probs = []
    for s, sub in _rows_by([chosen[i].modality for i in rows]).items():
        probs.append(torch.sigmoid(own_discs[s](back[sub])).mean(dim=(1, 2, 3)))
    return float(torch.cat(probs).mean())


def _nbytes(*modules: nn.Module) -> int:
    return sum(state_nbytes(m.state_dict()) for m in modules)


def train_translation(
    clients: Mapping[str, Sequence[TranslationItem]],
    modalities: Sequence[str],
    cfg: TranslationConfig,
    seed: int,
) -> TranslationResult:
    """Run the translation federation (steps 1-4 of the module docstring, ``cfg.rounds`` times).

    Args:
        clients: Client id -> its training images.
        modalities: Every modality tag of the benchmark.
        cfg: Hyper-parameters.
        seed: Seeds the networks' initialisation and every client's stream.

    Returns:
        The global translator, the per-round history and the bytes sent each way.
    """
    torch.manual_seed(seed)
    gen = Translator(modalities, cfg.width, cfg.blocks)
    discs = {m: PatchDiscriminator(cfg.disc_width) for m in modalities}
    history: list[dict[str, Any]] = []
    up = down = 0
    ids = list(clients)
    for r in range(cfg.rounds):
        g_states, sizes, scores, losses = [], [], [], {}
        fed: dict[str, dict[str, int]] = {}
        d_states: dict[str, list[tuple[dict[str, torch.Tensor], int]]] = {m: [] for m in discs}
        for k, cid in enumerate(ids):
            items = clients[cid]
            rng = np.random.default_rng([seed, r, k])
            torch.manual_seed(int(rng.integers(2**31)))
            local_g = copy.deepcopy(gen)
            local_d = {m: copy.deepcopy(d) for m, d in discs.items()}
            down += _nbytes(gen, *discs.values())
            stats = local_update(local_g, local_d, discs, items, cfg, rng)
            losses[cid] = {k2: v for k2, v in stats.items() if k2 != "disc_images"}
            fed[cid] = stats["disc_images"]
            own = {m: local_d[m] for m in sorted({it.modality for it in items})}
            scores.append(quality_score(local_g, own, items, cfg.score_batch))
            sizes.append(len(items))
            g_states.append(local_g.state_dict())
            sent = {m: local_d[m] for m in fed[cid]}
            up += _nbytes(local_g, *sent.values()) + 4  # + the score
            for m, d in sent.items():
                d_states[m].append((d.state_dict(), fed[cid][m]))
        weights = score_weights(sizes, scores, cfg.weighting, cfg.score_floor)
        gen.load_state_dict(weighted_mean(g_states, torch.tensor(weights)))
        for m, held in d_states.items():
            if held:
                total = sum(n for _s, n in held)
                shares = torch.tensor([n / total for _s, n in held])
                mean = weighted_mean([st for st, _n in held], shares)
                discs[m].load_state_dict(mean)
        history.append(
            {
                "round": r,
                "scores": dict(zip(ids, scores, strict=True)),
                "weights": dict(zip(ids, weights, strict=True)),
                "losses": losses,
                "disc_images": fed,
            }
        )
    gen.eval()
    return TranslationResult(gen, discs, history, {"up_bytes": up, "down_bytes": down})
