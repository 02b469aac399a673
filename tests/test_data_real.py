"""Real-dataset benchmarks composed from config on fixtures, and record validation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import real_fixtures as rf
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from fedmllm.configs import CONFIG_DIR as CONFIGS
from fedmllm.data.collate import image_to_tensor
from fedmllm.data.readers.common import DatasetNotFoundError
from fedmllm.data.real import load_real_benchmark
from fedmllm.data.validation import InvalidRecordError
from fedmllm.models.tokenizer import UNK, build_word_tokenizer
from fedmllm.train import run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    rf.everything(root)
    return root


def _bench(name: str, data_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"benchmark={name}", *overrides])
    with open_dict(cfg):
        cfg.paths.data_dir = str(data_dir)
    return instantiate(cfg.benchmark)


def _ids(samples) -> set[str]:
    return {s.meta["id"] for s in samples}


def test_fedmed_composes_the_papers_clients(data_dir: Path) -> None:
    # Execute
    bench = _bench(
        "fedmed",
        data_dir,
        "benchmark.train_sizes={vqa:10,report:6,detection:4}",
        "benchmark.test_size=4",
        "benchmark.public_size=9",
    )
    # Assert
    by_id = {c.client_id: c for c in bench.clients}
    assert [(c, by_id[c].task, len(by_id[c].train), len(by_id[c].test)) for c in by_id] == [
        ("vqa", "vqa", 10, 4),
        ("report", "report", 6, 4),
        ("detection", "detection", 4, 4),
    ]
    assert {s.meta["source"] for s in by_id["vqa"].train + by_id["vqa"].test} <= {
        "slake",
        "vqa_rad",
    }
    assert by_id["detection"].modality == "ct" and all(s.box for s in by_id["detection"].train)
    # The public split comes from train records no client received: disjoint, 3 per client
    # (detection has only 6 - 4 = 2 left over).
    assert len(bench.public) == 3 + 3 + 2
    clients = [s for c in bench.clients for s in (*c.train, *c.test)]
    assert not _ids(bench.public) & _ids(clients)
    assert {s.task for s in bench.public} == {"vqa", "report", "detection"}
    assert bench.validation["checked"] == 8 + len(clients) == 8 + 32
    assert bench.validation["skipped"] == 0


def test_vocabulary_covers_every_text_for_the_tiny_tokenizer(data_dir: Path) -> None:
    # Prepare
    bench = _bench("fedmed", data_dir, "benchmark.train_sizes={vqa:10,report:6,detection:4}")
    tokenizer = build_word_tokenizer(bench.vocabulary())
    unk = tokenizer.convert_tokens_to_ids(UNK)
    # Execute
    texts = [t for s in bench.all_samples() for t in (s.question, s.answer)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # Assert: Chinese-free English SLAKE, MIMIC reports with punctuation, boxes: no unknowns.
    assert all(unk not in row for row in ids)
    assert len(texts) > 50


def test_fedvqa_top_answers_and_bernoulli_sampling(data_dir: Path) -> None:
    # Execute: top-2 answers per source, each record kept with probability 6/12.
    bench = load_real_benchmark(
        "fedvqa",
        data_dir,
        {"aqua": {"task": "vqa", "sources": [{"reader": "aqua", "root": "aqua"}]}},
        train_sizes={"vqa": 4},
        test_size=-1,
        sampling="bernoulli",
        top_answers_k=2,
        seed=3,
    )
    full = _bench("fedvqa", data_dir, "benchmark.test_size=-1", "benchmark.public_size=0")
    # Assert: aqua answers people/horse/tree are equally frequent; ties go alphabetically.
    (aqua,) = bench.clients
    assert {s.answer for s in aqua.train + aqua.test} <= {"horse", "people"}
    assert len(aqua.test) == 8  # 12 test records, 8 of them with a top-2 answer
    assert 0 < len(aqua.train) < 8  # Bernoulli(4/8) over the 8 eligible train records
    assert [c.client_id for c in full.clients] == ["aqua", "gqa", "vizwiz", "abstract", "cocoqa"]
    assert all(len(c.test) == 12 for c in full.clients)  # every source keeps <= 100 answers


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    # Execute: the command line a user types, on an empty data_dir.
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "train.py"),
            "experiment=fedvqa_fedavg",
            "benchmark=fedvqa",
            "debug=smoke",
            f"paths.data_dir={tmp_path}",
            f"paths.log_dir={tmp_path}",
            "logger=none",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    # Assert
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in out
    assert str(tmp_path / "aqua" / "train.json") in out and "docs/data.md" in out
    with pytest.raises(DatasetNotFoundError, match="image folder"):
        (tmp_path / "aqua").mkdir()
        (tmp_path / "aqua" / "train.json").write_text("[]")
        load_real_benchmark("x", tmp_path, {"a": {"task": "vqa", "sources": [{"reader": "aqua"}]}})


def _bad_llava(root: Path) -> Path:
    """A FedVLMBench folder whose client 1 holds five kinds of bad record."""
    base = rf.fedvlmbench(root, clients=2, n_train=14, n_test=4)
    rf.image(base / "image" / "cut.png", 7).write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    path = base / "train" / "client_1.json"
    records = json.loads(path.read_text())
    conv = [{"from": "human", "value": "<image>\nq?"}, {"from": "gpt", "value": "yes"}]
    bad = [
        {"id": "gone", "image": "missing.png", "conversations": conv},
        {"id": "cut", "image": "cut.png", "conversations": conv},
        {
            "id": "empty",
            "image": "c1_train_0.png",
            "conversations": [conv[0], {"from": "gpt", "value": " "}],
        },
        {"id": "seg", "image": "c1_train_0.png", "task": "segmentation", "conversations": conv},
        {
            "id": "flip",
            "image": "c1_train_0.png",
            "task": "detection",
            "conversations": [conv[0], {"from": "gpt", "value": "[0.6, 0.2, 0.3, 0.5]"}],
        },
    ]
    path.write_text(json.dumps(records + bad))
    return base


def test_bad_records_fail_by_default_naming_dataset_record_and_file(tmp_path: Path) -> None:
    _bad_llava(tmp_path)
    with pytest.raises(InvalidRecordError) as info:
        load_real_benchmark("llava", tmp_path, "discover:fedvlmbench")
    message = str(info.value)
    assert "llava:client_1" in message and "record llava:client_1/gone" in message
    assert str(tmp_path / "fedvlmbench" / "image" / "missing.png") in message
    assert "image missing" in message and "skip_invalid" in message


def test_skip_invalid_counts_every_kind_and_keeps_collate_safe(tmp_path: Path) -> None:
    # Execute
    _bad_llava(tmp_path)
    bench = load_real_benchmark("llava", tmp_path, "discover:fedvlmbench", skip_invalid=True)
    # Assert
    v = bench.validation
    assert v["skipped"] == 5 and v["checked"] == 2 * (14 + 4) + 5
    assert v["by_dataset"]["client_1/train"] == {"checked": 19, "skipped": 5}
    reasons = v["reasons"]
    assert reasons["image missing"] == 1 and reasons["image unreadable"] == 1
    assert reasons["empty answer"] == 1
    assert reasons["unknown task"] == 1 and reasons["box inverted"] == 1
    kept = [s for c in bench.clients for s in (*c.train, *c.test)]
    assert len(kept) == 36
    assert all(image_to_tensor(s.image, 16).shape == (3, 16, 16) for s in kept)


def test_validation_counts_reach_results_json(make_cfg, tmp_path: Path) -> None:
    # Prepare: a bring-your-own federation with five bad records, skipped; every record is
    # used (no public split: the tiny model keeps its random initialisation).
    data = tmp_path / "byo"
    _bad_llava(data)
    cfg = make_cfg(
        "fedmed_fedavg",
        "benchmark=llava",
        f"benchmark.data_dir={data}",
        "benchmark.skip_invalid=true",
        "benchmark.train_sizes=null",
        "benchmark.public_size=0",
        "model.pretrain.steps=0",
    )
    # Execute
    run(cfg)
    # Assert
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert list(results["clients"]) == ["client_1", "client_2"]
    assert results["validation"]["skipped"] == 5
    assert results["validation"]["reasons"]["image missing"] == 1


def test_fedmed_fixture_trains_in_smoke_mode(make_cfg, data_dir: Path) -> None:
    # Execute: real formats end to end (JPEG, NIfTI slices with boxes, report text).
    cfg = make_cfg("fedmed_fedavg", "benchmark=fedmed", f"benchmark.data_dir={data_dir}")
    _, objects = run(cfg)
    # Assert
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert list(results["clients"]) == ["vqa", "report", "detection"]
    assert results["benchmark"] == "fedmed" and results["validation"]["skipped"] == 0
    bench = objects["components"].benchmark
    assert [len(c.train) for c in bench.clients] == [8, 8, 6]  # detection has only 6 records
    assert len(bench.public) > 0


def test_a_slice_of_a_volume_reaches_the_model_as_an_image(data_dir: Path) -> None:
    bench = _bench("fedmed", data_dir, "benchmark.train_sizes={vqa:1,report:1,detection:2}")
    sample = bench.clients[2].train[0]
    pixels = image_to_tensor(sample.image, 32)
    assert pixels.shape == (3, 32, 32) and float(pixels.std()) > 0.1  # not a blank slice
    assert np.isfinite(pixels.numpy()).all()


def test_mrg_mimic_splits_mimic_cxr_into_disjoint_view_sites(data_dir: Path) -> None:
    # Prepare: the fixture's train studies: 0 (PA, AP, lateral), 1 (AP, lateral), 2 (lateral),
    # 3 (PA, AP, lateral); test study 5 has PA, AP and lateral images.
    # Execute
    bench = _bench(
        "mrg_mimic",
        data_dir,
        "benchmark.train_sizes={report:2}",
        "benchmark.test_size=1",
        "benchmark.public_size=0",
        "benchmark.partition.min_train=1",
        "benchmark.partition.min_test=0",
    )
    # Assert: PA site gets PA studies, AP site the AP-only one, lateral site the lateral-only one
    by_id = {c.client_id: c for c in bench.clients}
    assert _ids(by_id["pa"].train) == {"mimic_cxr/s50000000", "mimic_cxr/s50000003"}
    assert _ids(by_id["ap"].train) == {"mimic_cxr/s50000001"}
    assert _ids(by_id["lateral"].train) == {"mimic_cxr/s50000002"}
    assert all(c.task == "report" for c in bench.clients)
