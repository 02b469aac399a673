"""Fed+RAG on the real-data readers and tiny random copies of the real architectures: the
vision-tower vectors come through each family's own processor and ``get_image_features``."""

from __future__ import annotations

import pytest
from omegaconf import open_dict
from test_real_e2e import model_overrides

from fedmllm.train import run


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_fed_rag_on_slake_and_vqa_rad(make_cfg, real_checkpoints, tmp_path, family):
    import real_fixtures as rf

    data = tmp_path / "data"
    rf.slake(data)
    rf.vqa_rad(data)
    overrides = model_overrides(family, real_checkpoints[family])
    cfg = make_cfg("fedmed_rag", "benchmark=slake_vqarad", "retrieval.k=2", *overrides, "threads=1")
    with open_dict(cfg):
        cfg.paths.data_dir = str(data)
    _, objects = run(cfg)
    facts = objects["results"]["retrieval"]
    assert set(facts["libraries"]) == {"slake", "vqa_rad"}
    for client in objects["components"].eval_clients:
        for s in client.test:
            ids = [r["case_id"] for r in s.meta["retrieved"]]
            assert ids and all(i.startswith(f"{client.client_id}/train/") for i in ids)
            assert s.question.endswith(s.meta["question_alone"])
    assert facts["ms_per_question"] > 0
