"""``text_cls_synth``: generated text classification, an analogue of UniFLoW's GLUE runs.

Three task kinds, each the shape of one GLUE task the paper reports:

- ``sst2`` (single sentence, ``positive``/``negative``): a review built from filler words and
  one to three opinion words, each possibly negated by ``not``; the label is the sign of the
  summed polarity (a negation flips one word's sign; ties are redrawn).
- ``rte`` (pair, ``entailment``/``not_entailment``) and ``mnli`` (pair, ``entailment``/
  ``neutral``/``contradiction``): a premise states two or three facts ``the <noun> is <adj>``;
  the hypothesis repeats one (entailment), gives its antonym (contradiction) or talks about a
  noun the premise does not mention (neutral). RTE merges neutral and contradiction, as GLUE's
  RTE does.

Clients (``num_clients``, default 3, UniFLoW's count) differ by label mix: client k's training
labels follow proportions drawn from ``Dirichlet(label_alpha)`` (``null``: uniform), while every
test split is balanced, so a client's test accuracy measures the model, not its prior. Every
sample is drawn from its own random stream ``(seed, stream, index)``. Generation takes well
under a second; the result is cached as the image benchmarks are
(``<cache_dir>/text_cls_synth/<hash>/``, with an empty image array).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedmllm.data import cache
from fedmllm.data.benchmark import Benchmark, resolve_sizes, validate_benchmark
from fedmllm.data.readers.glue import PAIR_SEP
from fedmllm.data.schema import ClientData, Sample

NAME = "text_cls_synth"
VERSION = 1
LABELS = {
    "sst2": ["negative", "positive"],
    "rte": ["entailment", "not_entailment"],
    "mnli": ["entailment", "neutral", "contradiction"],
}
POSITIVE = [
    "good",
    "great",
    "fine",
    "lovely",
    "superb",
    "brilliant",
    "charming",
    "moving",
    "clever",
    "fresh",
]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "poor", "clumsy", "tedious", "flat", "messy"]
FILLERS = [
    "the",
    "film",
    "story",
    "acting",
    "plot",
    "music",
    "cast",
    "script",
    "it",
    "was",
    "is",
    "and",
    "quite",
    "really",
    "very",
]
NOUNS = [
    "box",
    "cup",
    "door",
    "lamp",
    "road",
    "tree",
    "car",
    "ship",
    "bell",
    "coat",
    "wall",
    "shoe",
    "kite",
    "bowl",
    "ring",
]
NEGATION = 0.3  # chance that an opinion word is negated (sst2)
ANTONYMS = [
    ("big", "small"),
    ("hot", "cold"),
    ("open", "closed"),
    ("old", "new"),
    ("fast", "slow"),
    ("heavy", "light"),
    ("wet", "dry"),
    ("clean", "dirty"),
]


def labels_of(task: str) -> list[str]:
    """The label names of a task kind.

    Raises:
        ValueError: An unknown task kind.
    """
    if task not in LABELS:
        raise ValueError(f"benchmark.task must be one of {sorted(LABELS)}, got {task!r}")
    return list(LABELS[task])


def words() -> list[str]:
    """Every word the generator may write, labels included."""
    adjectives = [a for pair in ANTONYMS for a in pair]
    label_words = [w for names in LABELS.values() for w in names]
    return sorted(set(POSITIVE + NEGATIVE + FILLERS + NOUNS + adjectives + label_words + ["not"]))


def _review(rng: np.random.Generator, label: int) -> str:
    while True:
        n = int(rng.integers(1, 4))
        polarity, parts = 0, []
        for _ in range(n):
            sign = 1 if rng.random() < 0.5 else -1
            word = str(rng.choice(POSITIVE if sign > 0 else NEGATIVE))
            negated = rng.random() < NEGATION
            polarity += -sign if negated else sign
            fill = list(rng.choice(FILLERS, size=int(rng.integers(1, 4))))
            parts += [*fill, *(["not"] if negated else []), word]
        if polarity != 0 and int(polarity > 0) == label:
            return " ".join(parts)


def _pair(rng: np.random.Generator, kind: str) -> str:
    nouns = list(rng.choice(NOUNS, size=4, replace=False))
    facts = int(rng.integers(2, 4))
    adjs = [ANTONYMS[int(rng.integers(len(ANTONYMS)))][int(rng.integers(2))] for _ in range(facts)]
    premise = " and ".join(f"the {n} is {a}" for n, a in zip(nouns, adjs, strict=False))
    k = int(rng.integers(facts))
    if kind == "entailment":
        hyp = f"the {nouns[k]} is {adjs[k]}"
    elif kind == "contradiction":
        pair = next(p for p in ANTONYMS if adjs[k] in p)
        hyp = f"the {nouns[k]} is {pair[1 - pair.index(adjs[k])]}"
    else:  # neutral: a noun the premise never mentions
        adj = ANTONYMS[int(rng.integers(len(ANTONYMS)))][int(rng.integers(2))]
        hyp = f"the {nouns[3]} is {adj}"
    return f"{premise}{PAIR_SEP}{hyp}"


VAL_STREAM = 10_000  # validation stream of client c: VAL_STREAM + c (train 1+2c, test 2+2c)


def make_sample(task: str, seed: int, stream: int, index: int, label: int, split: str) -> Sample:
    """Sample ``index`` of one stream with label index ``label``."""
    rng = np.random.default_rng([seed, stream, index])
    names = labels_of(task)
    if task == "sst2":
        text = _review(rng, label)
    elif task == "mnli":
        text = _pair(rng, names[label])
    else:  # rte: not_entailment is a contradiction or a neutral pair, half each
        kind = "entailment" if label == 0 else str(rng.choice(["contradiction", "neutral"]))
        text = _pair(rng, kind)
    meta = {"source": NAME, "id": f"{stream}/{split}/{index:06d}", "split": split}
    return Sample(None, "text", text, names[label], "classification", meta=meta)


def _labels(rng: np.random.Generator, n: int, props: np.ndarray) -> np.ndarray:
    return rng.choice(len(props), size=n, p=props)


def build(args: dict[str, Any]) -> Benchmark:
    """Generate the benchmark of ``args`` in memory."""
    task, seed, k = args["task"], args["seed"], args["num_clients"]
    n_labels = len(labels_of(task))
    uniform = np.full(n_labels, 1.0 / n_labels)
    mix_rng = np.random.default_rng([seed, 999])
    alpha = args["label_alpha"]
    clients = []
    for c in range(k):
        cid = f"client{c}"
        props = uniform if alpha is None else mix_rng.dirichlet(np.full(n_labels, alpha))
        lab_rng = np.random.default_rng([seed, 1000 + c])
        train_labels = _labels(lab_rng, args["train_sizes"][cid], props)
        test_labels = np.arange(args["test_size"]) % n_labels  # balanced
        train = [
            make_sample(task, seed, 1 + 2 * c, i, int(y), "train")
            for i, y in enumerate(train_labels)
        ]
        test = [
            make_sample(task, seed, 2 + 2 * c, i, int(y), "test") for i, y in enumerate(test_labels)
        ]
        val = [
            make_sample(task, seed, VAL_STREAM + c, i, i % n_labels, "val")
            for i in range(args.get("val_size", 0))
        ]
        clients.append(ClientData(cid, "classification", "text", train, test, val))
    pub_labels = np.arange(args["public_size"]) % n_labels
    public = [make_sample(task, seed, 0, i, int(y), "public") for i, y in enumerate(pub_labels)]
    return Benchmark(NAME, public, clients, words=words())


def _encode(samples: list[Sample]) -> list[dict[str, Any]]:
    return [{"q": s.question, "a": s.answer, "meta": s.meta} for s in samples]


def _decode(rows: list[dict[str, Any]]) -> list[Sample]:
    return [Sample(None, "text", r["q"], r["a"], "classification", meta=r["meta"]) for r in rows]


def to_payload(bench: Benchmark) -> dict[str, Any]:
    """The cache's JSON side."""
    clients = [
        {
            "client_id": c.client_id,
            "train": _encode(c.train),
            "test": _encode(c.test),
            "val": _encode(c.val),
        }
        for c in bench.clients
    ]
    return {"public": _encode(bench.public), "clients": clients}


def from_payload(payload: dict[str, Any], images: np.ndarray) -> Benchmark:
    """Invert :func:`to_payload`."""
    clients = [
        ClientData(
            c["client_id"],
            "classification",
            "text",
            _decode(c["train"]),
            _decode(c["test"]),
            _decode(c.get("val", [])),
        )
        for c in payload["clients"]
    ]
    return Benchmark(NAME, _decode(payload["public"]), clients, words=words())


def load_text_cls_synth(
    cache_dir: str | Path | None = "data",
    seed: int = 0,
    task: str = "sst2",
    num_clients: int = 3,
    train_sizes: dict[str, int] | None = None,
    test_size: int = 100,
    public_size: int = 0,
    val_size: int = 0,
    label_alpha: float | None = 1.0,
    labels: list[str] | None = None,
) -> Benchmark:
    """Load (or generate and cache) ``text_cls_synth``.

    Args:
        cache_dir: Cache root; ``None`` generates in memory.
        seed: Non-negative seed.
        task: ``sst2``, ``rte`` or ``mnli`` (see the module docstring).
        num_clients: Clients ``client0..``.
        train_sizes: Per client id or the task key ``classification`` (default 200).
        test_size: Balanced test samples per client.
        val_size: Balanced validation samples per client, from streams of their own (the
            train and test samples do not move with it); searches score these.
        public_size: Balanced public samples (the tiny classifier is not pretrained: 0).
        label_alpha: Dirichlet concentration of the clients' training label mixes (null:
            uniform, IID).
        labels: The label names the config declares for the classifier (``model.labels``
            reads them); must be the task's, in order (None: not checked).

    Raises:
        ValueError: A bad task, a negative size or seed, fewer than one client, or a
            non-positive ``label_alpha``.
    """
    if labels is not None and list(labels) != labels_of(task):
        raise ValueError(
            f"benchmark.labels {list(labels)} are not task {task!r}'s labels {labels_of(task)}"
        )
    ids = [(f"client{c}", "classification") for c in range(int(num_clients))]
    if not ids:
        raise ValueError(f"benchmark.num_clients must be at least 1, got {num_clients}")
    if label_alpha is not None and not label_alpha > 0:
        raise ValueError(f"benchmark.label_alpha must be > 0 or null, got {label_alpha}")
    sizes = resolve_sizes(train_sizes, ids, {"classification": 200})
    if min(seed, test_size, public_size, val_size, *sizes.values()) < 0:
        raise ValueError("seed and benchmark sizes must be non-negative")
    args = {
        "task": task,
        "seed": int(seed),
        "num_clients": int(num_clients),
        "train_sizes": sizes,
        "test_size": int(test_size),
        "public_size": int(public_size),
        "val_size": int(val_size),
        "label_alpha": None if label_alpha is None else float(label_alpha),
    }
    empty = np.zeros((0, 1, 1, 3), dtype=np.uint8)
    bench = cache.load_or_build(
        cache_dir, NAME, args, VERSION, lambda: (build(args), empty), to_payload, from_payload
    )
    return validate_benchmark(bench)
