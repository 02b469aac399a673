"""The inspection command and the statistics it prints."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import real_fixtures as rf
from PIL import Image

from fedmllm.data.collate import load_image
from fedmllm.data.inspect import CELL, load_benchmark, main
from fedmllm.data.schema import ClientData, Sample
from fedmllm.data.stats import client_stats, js_divergence, mean_divergence

SMALL = {
    "fedmed_synth": [
        "benchmark.public_size=12",
        "benchmark.train_sizes={vqa:6,report:6,detection:6}",
    ],
    "crossmodal_synth": ["benchmark.public_size=12", "benchmark.train_sizes={vqa:6}"],
    "fedvqa_synth": ["benchmark.public_size=12", "benchmark.train_sizes={vqa:6}"],
}


def test_js_divergence_by_hand() -> None:
    # Equal tables: 0; disjoint: 1 bit; p=(1,0) vs q=(.5,.5): m=(.75,.25),
    # JS = .5*log2(1/.75) + .5*(.5*log2(.5/.75) + .5*log2(.5/.25)) = 0.3113 bits.
    assert js_divergence(Counter(a=3, b=1), Counter(a=6, b=2)) == pytest.approx(0.0)
    assert js_divergence(Counter(a=2), Counter(b=5)) == pytest.approx(1.0)
    expected = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25 * math.log2(2)
    assert js_divergence(Counter(a=4), Counter(a=1, b=1)) == pytest.approx(expected)
    assert expected == pytest.approx(0.3113, abs=1e-4)


def _client(cid: str, answers: list[str], kinds: list[str]) -> ClientData:
    samples = [Sample(None, "ct", "q?", a, "vqa", k) for a, k in zip(answers, kinds, strict=True)]
    return ClientData(cid, "vqa", "ct", samples, samples[:1])


def test_client_stats_and_divergence() -> None:
    a = _client("a", ["yes", "yes", "no", "left"], ["closed", "closed", "closed", "open"])
    b = _client("b", ["left", "right"], ["open", "open"])
    stats = client_stats(a)
    assert stats["closed_share"] == 0.75 and stats["top_answers"][0] == ("yes", 0.5)
    assert (stats["train"], stats["test"], stats["distinct_answers"]) == (4, 1, 3)
    # a = (yes .5, no .25, left .25), b = (left .5, right .5): computed from the definition.
    p, q = {"yes": 0.5, "no": 0.25, "left": 0.25}, {"left": 0.5, "right": 0.5}
    keys = set(p) | set(q)
    m = {k: (p.get(k, 0) + q.get(k, 0)) / 2 for k in keys}
    js = sum(0.5 * v * math.log2(v / m[k]) for d in (p, q) for k, v in d.items())
    assert mean_divergence([a, b]) == {"a": pytest.approx(js), "b": pytest.approx(js)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_inspect_every_synthetic_benchmark(name, tmp_path: Path, capsys) -> None:
    # Prepare
    out = tmp_path / "grid.png"
    args = [f"benchmark={name}", *SMALL[name], f"paths.data_dir={tmp_path}"]
    # Execute
    code = main([*args, f"inspect.out={out}", "inspect.examples=3"])
    # Assert
    text = capsys.readouterr().out
    bench, _ = load_benchmark(args)
    assert code == 0
    for c in bench.clients:
        assert c.client_id in text
    grid = np.asarray(Image.open(out).convert("RGB"))
    rows = len(bench.clients)
    assert grid.shape[0] % rows == 0 and grid.shape[1] == 90 + 3 * (CELL + 6)
    # The first cell of every row shows that client's first training image.
    cell_h = grid.shape[0] // rows
    for r, c in enumerate(bench.clients):
        expected = np.asarray(load_image(c.train[0].image).resize((CELL, CELL), Image.NEAREST))
        assert np.array_equal(grid[r * cell_h : r * cell_h + CELL, 90 : 90 + CELL], expected)


def test_inspect_a_real_benchmark_fixture(tmp_path: Path, capsys) -> None:
    # Prepare: two hospitals in LLaVA format; answers cycle yes/no/liver (2/3 closed).
    rf.fedvlmbench(tmp_path, clients=2, n_train=9, n_test=3)
    out = tmp_path / "real.png"
    # Execute
    main(["benchmark=llava", f"paths.data_dir={tmp_path}", f"inspect.out={out}"])
    # Assert
    text = capsys.readouterr().out
    assert "client_1" in text and "client_2" in text and "67%" in text
    assert "validation: 24 records checked, 0 skipped" in text
    assert Image.open(out).size[1] == 2 * (CELL + 5 * 11 + 6)
