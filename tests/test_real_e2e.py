"""train.py, eval.py, resume and the PEFT export on tiny random checkpoints of the real
architectures (LLaVA, Idefics3/SmolVLM, Qwen2-VL), loaded as a user would: ``model=hf
model.path=<dir>`` or a named config with ``model.path`` pointing at a local copy.

Every run's measured traffic must equal what the cost dry run predicts from the same config:
two independent paths (tensors the simulator counted vs shapes on a meta-device model).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from fedmllm.build import build_components, make_simulator
from fedmllm.cost import dry_run
from fedmllm.evaluate import evaluate_run
from fedmllm.lora.state import load_adapter, save_adapter
from fedmllm.train import run


def model_overrides(family: str, path: Path) -> list[str]:
    """How a user points at a local copy: model=hf for LLaVA, named configs for the others."""
    if family == "llava":
        return ["model=hf", f"model.path={path}"]
    if family == "idefics3":
        return ["model=smolvlm_256m", f"model.path={path}", "model.dtype=float32"]
    # Qwen2-VL's processor class needs torchvision, which our CPU torch cannot have beside it.
    return [
        "model=qwen2_vl_2b",
        f"model.path={path}",
        "model.dtype=float32",
        "model.processor=image_only",
        "model.processor_kwargs={}",
    ]


RUNS = {
    "fedavg": ["experiment=fedmed_fedavg"],
    "mole": ["experiment=fedmed_mole", "compare_with=null"],
    "feda2": ["experiment=crossmodal_feda2_2stage"],  # FedA²-LoRA with UniFLoW's two stages
    "modality_expert": ["experiment=crossmodal_modality_expert"],
}


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl"])
@pytest.mark.parametrize("method", list(RUNS))
def test_train_on_real_architectures(make_cfg, real_checkpoints, family, method):
    experiment, *rest = RUNS[method]
    overrides = [*rest, *model_overrides(family, real_checkpoints[family]), "threads=1"]
    cfg = make_cfg(experiment.split("=")[1], *overrides)
    _, objects = run(cfg)
    results = objects["results"]
    for client in results["clients"].values():
        main = client["scores"][client["main_metric"]]
        assert 0.0 <= main <= 1.0
    losses = [m["loss"] for m in results["history"][0]["train"].values()]
    assert losses and all(math.isfinite(x) and x > 0 for x in losses)
    engine = objects["components"].engine
    assert type(engine.model).__name__.lower().startswith(family.replace("_", "")[:5])
    adapters = [p for p in engine.model.parameters() if p.requires_grad]
    assert adapters and all(p.dtype == torch.float32 for p in adapters)
    # The cost dry run, from the same overrides, predicts the bytes the simulator counted.
    predicted = dry_run([experiment, "debug=smoke", *overrides])
    assert predicted["clients"] == len(results["clients"])
    assert results["comm"] == {
        "up_bytes": predicted["run"]["up_bytes"],
        "down_bytes": predicted["run"]["down_bytes"],
    }


def test_hf_config_takes_an_idefics3_checkpoint_by_family(make_cfg, real_checkpoints):
    """model=hf covers every family's module names (language_model|text_model, ...)."""
    path = real_checkpoints["idefics3"]
    overrides = ["model=hf", f"model.path={path}", "model.family=idefics3", "threads=1"]
    cfg = make_cfg("fedmed_fedavg", *overrides)
    _, objects = run(cfg)
    adapted = objects["components"].method.adapted_modules
    assert adapted and all(".text_model." in name for name in adapted)


def _llava(real_checkpoints) -> list[str]:
    return [
        "model=hf",
        f"model.path={real_checkpoints['llava']}",
        "federation.rounds=2",
        "threads=1",
    ]


def test_resume_on_llava(make_cfg, real_checkpoints, tmp_path):
    base = _llava(real_checkpoints)
    cfg = make_cfg("fedmed_mole", "compare_with=null", *base)
    # Resume: stopped after round 1 and resumed, the run equals an uninterrupted one.
    c = build_components(cfg)
    full, _ = make_simulator(cfg, c, tmp_path / "full")
    full_out = full.fit()
    part_cfg = make_cfg("fedmed_mole", "compare_with=null", *base)
    first, _ = make_simulator(part_cfg, build_components(part_cfg), tmp_path / "part")
    assert first.fit(stop_after=1)["interrupted"]
    resumed, _ = make_simulator(part_cfg, build_components(part_cfg), tmp_path / "resumed")
    resumed.resume_from(tmp_path / "part")
    resumed_out = resumed.fit()
    for k in full.global_state:
        assert torch.equal(full.global_state[k], resumed.global_state[k]), k
    assert full_out["scores"] == resumed_out["scores"]


def test_eval_and_peft_export_on_llava(make_cfg, real_checkpoints, tmp_path):
    path = real_checkpoints["llava"]
    # eval.py on a finished FedAvg run reproduces its scores and adds the global model.
    fedavg = make_cfg("fedmed_fedavg", *_llava(real_checkpoints))
    _, objects = run(fedavg)
    results = evaluate_run(Path(fedavg.paths.output_dir), cross_client=False)
    trained = objects["results"]["clients"]
    assert {c: v["scores"] for c, v in results["clients"].items()} == {
        c: v["scores"] for c, v in trained.items()
    }
    assert set(results["global"]["clients"]) == set(trained)

    # PEFT export: the global adapter, saved in PEFT's layout, loads into PEFT over the same
    # checkpoint and gives the logits of our engine with that adapter.
    sim, method = objects["simulator"], objects["components"].method
    export = tmp_path / "adapter"
    save_adapter(
        sim.global_state,
        export,
        {"r": method.r, "lora_alpha": method.alpha, "target_modules": method.adapted_modules},
    )
    state, config = load_adapter(export)
    assert set(state) == set(sim.global_state) and config["peft_type"] == "LORA"
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(path), export
    )
    engine = objects["components"].engine
    method.load_adapter_state(sim.global_state)
    batch = engine.collator(objects["components"].eval_clients[0].test[:2])
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "labels"}
    engine.model.eval()
    with torch.no_grad():
        ours = engine.model(**inputs).logits
        theirs = peft_model.eval()(**inputs).logits
        with peft_model.disable_adapter():
            bare = peft_model(**inputs).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, bare, atol=1e-4)  # the adapter is not a no-op


def test_slake_and_vqa_rad_on_a_real_architecture(make_cfg, real_checkpoints, tmp_path):
    """The documented walk-through (docs/real_models.md) on tiny copies of both datasets."""
    import real_fixtures as rf
    from omegaconf import open_dict

    data = tmp_path / "data"
    rf.slake(data)
    rf.vqa_rad(data)
    path = real_checkpoints["llava"]
    cfg = make_cfg(
        "fedmed_mole", "benchmark=slake_vqarad", "compare_with=null", "model=hf",
        f"model.path={path}", "threads=1",
    )  # fmt: skip
    with open_dict(cfg):
        cfg.paths.data_dir = str(data)
    _, objects = run(cfg)
    results = objects["results"]
    assert results["benchmark"] == "slake_vqarad"
    assert set(results["clients"]) == {"slake", "vqa_rad"}
    predicted = dry_run(["experiment=fedmed_mole", "benchmark=slake_vqarad", "model=hf",
                         f"model.path={path}", "debug=smoke"])  # fmt: skip
    assert predicted["clients"] == 2
    assert results["comm"]["up_bytes"] == predicted["run"]["up_bytes"]
