"""The shared engine and the round loop on the real tiny model (smoke sizes)."""

from __future__ import annotations

import torch

from fedmllm.build import build_components, make_simulator


def _simulator(cfg, run_dir):
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, run_dir)
    return sim, c


def _probe_logits(c) -> torch.Tensor:
    batch = c.engine.collator(c.eval_clients[0].test[:2])
    c.method.eval()
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        return c.method.model(**inputs).logits


def test_swapping_client_adapters_changes_output_and_swapping_back_restores_it(make_cfg, tmp_path):
    cfg = make_cfg("fedmed_standalone", "federation.local_steps=3", "federation.lr=0.01")
    sim, c = _simulator(cfg, tmp_path / "run")
    sim.fit()  # standalone: each client ends with its own private adapter
    params_before = {n: p.data_ptr() for n, p in c.method.model.named_parameters()}
    sim.swap_in("vqa")
    out_vqa = _probe_logits(c)
    sim.swap_in("report")
    out_report = _probe_logits(c)
    sim.swap_in("vqa")
    out_vqa_again = _probe_logits(c)
    assert not torch.allclose(out_vqa, out_report)  # the swap really changed the model
    assert torch.equal(out_vqa, out_vqa_again)  # and swapping back restores it bit for bit
    assert params_before == {n: p.data_ptr() for n, p in c.method.model.named_parameters()}


def test_resumed_run_equals_uninterrupted_run(make_cfg, tmp_path):
    overrides = ("federation.rounds=3", "federation.local_steps=2", "federation.eval_every=2")
    cfg = make_cfg("fedmed_fedavg", *overrides)
    full, _ = _simulator(cfg, tmp_path / "full")
    full_out = full.fit()

    first, _ = _simulator(cfg, tmp_path / "part")
    assert first.fit(stop_after=1)["interrupted"]
    torch.manual_seed(12345)  # a different process state before resuming must not matter
    resumed, _ = _simulator(cfg, tmp_path / "resumed")
    resumed.resume_from(tmp_path / "part")
    resumed_out = resumed.fit()

    assert full.global_state.keys() == resumed.global_state.keys()
    for k in full.global_state:
        assert torch.equal(full.global_state[k], resumed.global_state[k]), k
    for cid in full.store.client_ids():
        opt_a, opt_b = full.store.get(cid)[1], resumed.store.get(cid)[1]
        for idx, st in opt_a["state"].items():
            assert torch.equal(st["exp_avg"], opt_b["state"][idx]["exp_avg"])
    assert full_out["scores"] == resumed_out["scores"]
    assert full_out["comm"] == resumed_out["comm"]
    # the federation really moved away from its initial adapter
    assert any(
        not torch.equal(full.global_state[k], full.initial_state[k]) for k in full.global_state
    )
