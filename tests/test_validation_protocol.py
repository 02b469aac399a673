"""Validation splits of every benchmark, and the protocol: searches score validation, not test.

A validation split must not move a single training, test or public sample (the runs pinned by
tests/test_method_layer_fingerprints.py keep their numbers), must be disjoint from them, and
every search config must optimise ``val_avg``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

import fedmllm.train as train_module
from fedmllm.config_check import ConfigError
from fedmllm.configs import CONFIG_DIR
from fedmllm.data.partition import partition
from fedmllm.data.synthetic import generator_args
from fedmllm.train import run, searched_metric

SYNTHETIC = ["fedmed_synth", "fedvqa_synth", "crossmodal_synth", "crossmodal_text_synth"]
SMALL = ["benchmark.public_size=3", "++benchmark.train_sizes={vqa:4,report:4,detection:4}"]


def _bench(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"benchmark={name}", *SMALL, *overrides])
    with open_dict(cfg):
        cfg.benchmark.cache_dir = None  # built in memory
    return instantiate(cfg.benchmark)


def _key(sample) -> tuple:
    image = b"" if sample.image is None else np.asarray(sample.image).tobytes()
    return (sample.question, sample.answer, image)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_validation_moves_no_other_sample_and_is_disjoint(name: str) -> None:
    without = _bench(name, "benchmark.val_size=0", "benchmark.test_size=2")
    with_val = _bench(name, "benchmark.val_size=3", "benchmark.test_size=2")
    assert [_key(s) for s in with_val.public] == [_key(s) for s in without.public]
    for a, b in zip(without.clients, with_val.clients, strict=True):
        assert (a.client_id, a.val) == (b.client_id, [])
        assert [_key(s) for s in b.train] == [_key(s) for s in a.train]
        assert [_key(s) for s in b.test] == [_key(s) for s in a.test]
        assert len(b.val) == 3 and {s.meta["split"] for s in b.val} == {"val"}
        seen = {_key(s) for s in (*b.train, *b.test, *with_val.public)}
        assert not seen & {_key(s) for s in b.val}


def test_every_embedded_benchmark_config_has_a_validation_split() -> None:
    for name in SYNTHETIC:
        cfg = yaml.safe_load((CONFIG_DIR / "benchmark" / f"{name}.yaml").read_text())
        assert cfg["val_size"] > 0, name


def test_cache_key_without_validation_is_the_old_one() -> None:
    args = generator_args(0, 32, 10, {"vqa": 5}, 4)
    assert set(args) == {"seed", "image_size", "public_size", "train_sizes", "test_size"}
    assert generator_args(0, 32, 10, {"vqa": 5}, 4, val_size=7)["val_size"] == 7


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partition_shares_validation_out_without_moving_train_or_test(scheme: str) -> None:
    bench = _bench("fedvqa_synth", "benchmark.val_size=6", "benchmark.test_size=6")
    from fedmllm.data.partition import Source

    sources = [
        Source(c.client_id, c.task, c.modality, c.train, c.test, c.val) for c in bench.clients
    ]
    bare = [Source(s.name, s.task, s.modality, s.train, s.test) for s in sources]
    cfg = {"scheme": scheme, "num_clients": 3, "seed": 5, "alpha": 1.0}
    with_val, without = partition(sources, cfg), partition(bare, cfg)
    for a, b in zip(with_val, without, strict=True):
        assert [_key(s) for s in a.train] == [_key(s) for s in b.train]
        assert [_key(s) for s in a.test] == [_key(s) for s in b.test]
    pooled = sorted(_key(s) for src in sources for s in src.val)
    assert sorted(_key(s) for c in with_val for s in c.val) == pooled  # each exactly once


def test_real_reader_carves_validation_from_unused_train_records(tmp_path: Path) -> None:
    import real_fixtures as rf

    rf.everything(tmp_path)
    sizes = ["benchmark.train_sizes={vqa:10,report:6,detection:4}", "benchmark.test_size=4"]

    def real(*extra: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name="train", overrides=["benchmark=fedmed", *sizes, *extra])
        with open_dict(cfg):
            cfg.paths.data_dir = str(tmp_path)
        return instantiate(cfg.benchmark)

    base = real("benchmark.public_size=3")
    carved = real("benchmark.public_size=3", "benchmark.val_size=2")
    ids = lambda samples: {s.meta["id"] for s in samples}  # noqa: E731
    assert ids(carved.public) == ids(base.public)
    for a, b in zip(base.clients, carved.clients, strict=True):
        assert ids(a.train) == ids(b.train) and ids(a.test) == ids(b.test) and not a.val
        assert not ids(b.val) & (ids(b.train) | ids(b.test) | ids(carved.public))
    # vqa has plenty left over: 2 records; detection had 6 - 4 = 2 left, 1 of them public.
    assert [len(c.val) for c in carved.clients] == [2, 2, 1]


def test_no_search_config_optimises_a_test_score() -> None:
    searches = sorted((CONFIG_DIR / "hparams_search").glob("*.yaml"))
    assert searches
    for path in searches:
        cfg = yaml.safe_load(path.read_text())
        assert cfg.get("optimized_metric") == "val_avg", path.name
    assert yaml.safe_load((CONFIG_DIR / "train.yaml").read_text())["optimized_metric"] == "val_avg"
    for path in CONFIG_DIR.rglob("*.yaml"):  # nobody switches a search back to test
        text = path.read_text()
        assert "optimized_metric: avg_main" not in text and "optimized_metric=avg_main" not in text


def test_optuna_without_validation_is_a_clear_error(monkeypatch) -> None:
    class FakeHydra:
        @staticmethod
        def initialized() -> bool:
            return True

        @staticmethod
        def get():
            class H:
                sweeper = {"_target_": "hydra_plugins.hydra_optuna_sweeper.OptunaSweeper"}

            return H

    cfg = {"optimized_metric": "val_avg"}
    from omegaconf import OmegaConf

    assert searched_metric(OmegaConf.create(cfg), {"val_avg": 0.25, "avg_main": 0.9}) == 0.25
    monkeypatch.setattr(train_module, "HydraConfig", FakeHydra)
    with pytest.raises(ConfigError, match="benchmark.val_size"):
        searched_metric(OmegaConf.create(cfg), {"val_avg": None, "avg_main": 0.9})


def test_a_run_scores_validation_once_and_test_does_not_move(make_cfg, tmp_path: Path) -> None:
    outs = {}
    for val in (0, 4):
        cfg = make_cfg("fedmed_fedavg", "seed=0", "threads=1", f"benchmark.val_size={val}")
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / f"val{val}")
        metrics, _ = run(cfg)
        outs[val] = (metrics, json.loads((Path(cfg.paths.output_dir) / "results.json").read_text()))
    (m0, r0), (m4, r4) = outs[0], outs[4]
    assert "val" not in r0 and m0["val_avg"] is None
    assert r4["avg"] == r0["avg"] and r4["clients"] == r0["clients"]
    assert [h.get("train") for h in r4["history"]] == [h.get("train") for h in r0["history"]]
    mains = [v["scores"][v["main_metric"]] for v in r4["val"].values()]
    assert set(r4["val"]) == set(r4["clients"])
    assert m4["val_avg"] == pytest.approx(sum(mains) / len(mains)) == pytest.approx(r4["val_avg"])
