"""LightFED's shared engine with retrieval: one base, adapters swapped, one library per client."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fedmllm.lora import LoRALinear
from fedmllm.retrieval import CaseEncoder, RetrievalAugmenter
from fedmllm.train import run


def test_fed_rag_smoke_one_base_own_libraries_adapter_free_index(make_cfg):
    cfg = make_cfg("fedmed_rag", "retrieval.k=2")
    _, objects = run(cfg)
    c, sim = objects["components"], objects["simulator"]
    results = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    facts = results["retrieval"]
    # one base model: the method trains adapters inside the engine's model, not a copy
    assert sim.method.model is c.engine.model
    # one library per client, each exactly the client's training cases
    raw = {cl.client_id: cl for cl in c.benchmark.clients}
    assert {o: i["size"] for o, i in facts["libraries"].items()} == {
        k: len(v.train) for k, v in raw.items()
    }
    assert facts["k"] == 2 and facts["ms_per_question"] > 0
    for client in c.eval_clients:
        for s in client.test:
            ids = [r["case_id"] for r in s.meta["retrieved"]]
            assert len(ids) == 2 and all(i.startswith(f"{client.client_id}/train/") for i in ids)
    # training moved the adapters away from the identity (B starts at zero) ...
    layers = [m for m in c.engine.model.modules() if isinstance(m, LoRALinear)]
    assert any(float(m.lora_B.weight.abs().sum()) > 0 for m in layers)
    # ... yet the index built before them still equals the encoder on the trained model:
    # the case library does not depend on adapters (LoRA stays out of the vision tower).
    enc = CaseEncoder(**facts["encoder"])
    vqa = raw["vqa"].train
    with torch.no_grad():
        now = enc.encode(vqa, c.engine)
    lib, info = RetrievalAugmenter(k=2, cache_dir=cfg.paths.data_dir).build_library(
        "vqa", [(f"vqa/train/{i}", s) for i, s in enumerate(vqa)], c.engine
    )
    assert info["from_cache"] is True  # same base weights and data: the run's cached library
    np.testing.assert_allclose(lib.index.reconstruct_n(0, len(vqa)), now, atol=1e-5)
