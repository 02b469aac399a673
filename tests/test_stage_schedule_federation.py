"""A mixed-modality federation: four imaging hospitals and one text-only hospital, II-stage."""

from __future__ import annotations

import torch

from fedmllm.aggregators.expert_aware import ExpertAware
from fedmllm.build import build_components, make_simulator
from fedmllm.lora.layers import LoRALinear
from fedmllm.lora.modules_to_save import ModulesToSaveLinear

VISION = ("vision_tower", "multi_modal_projector")


class Recording(ExpertAware):
    """Keeps the updates of the last round."""

    def aggregate(self, global_state, updates, round_idx):
        self.updates = list(updates)
        return super().aggregate(global_state, updates, round_idx)


def _bytes(model: torch.nn.Module, vision_side: bool) -> int:
    """Adapter bytes of the vision side (encoder LoRA + projector) or of the LLM side."""
    total = 0
    for name, m in model.named_modules():
        if any(v in name for v in VISION) != vision_side:
            continue
        if isinstance(m, LoRALinear):
            total += m.r * (m.in_features + m.out_features) * 4
        elif isinstance(m, ModulesToSaveLinear):
            total += (m.in_features + 1) * m.out_features * 4
    return total


def test_a_text_only_client_sends_no_vision_keys_and_is_averaged_only_where_it_trained(
    make_cfg, tmp_path
):
    cfg = make_cfg("crossmodal_text_2stage", "federation.local_steps=4")
    c = build_components(cfg)
    c.aggregator = agg = Recording()
    sim, _ = make_simulator(cfg, c, tmp_path / "run")
    out = sim.fit()
    ups = {u.client_id: u for u in agg.updates}
    assert set(ups) == {"ct", "mri", "xray", "us", "text"}
    all_keys = set(sim.initial_state)
    text_keys = set(ups["text"].state)
    assert text_keys and not any(v in k for k in text_keys for v in VISION)
    assert text_keys == {k for k in all_keys if not any(v in k for v in VISION)}
    for cid in ("ct", "mri", "xray", "us"):
        assert set(ups[cid].state) == all_keys
    # tau = 0.25 of 4 steps: the text client has nothing to train in stage I
    assert ups["text"].metrics["steps_skipped"] == 1 and ups["ct"].metrics["steps_skipped"] == 0

    n = {cid: u.num_examples for cid, u in ups.items()}
    for key, value in sim.global_state.items():
        holders = [cid for cid in ups if key in ups[cid].state]
        expected = sum(n[h] * ups[h].state[key] for h in holders) / sum(n[h] for h in holders)
        torch.testing.assert_close(value, expected)
        assert ("text" in holders) == (key in text_keys)

    model = c.engine.model
    vision, llm = _bytes(model, True), _bytes(model, False)
    assert vision > 0 and llm > 0
    assert out["comm"]["up_bytes"] == 4 * (vision + llm) + llm
    assert out["comm"]["down_bytes"] == 4 * (vision + llm) + llm
    assert set(out["scores"]) == set(ups)  # the text client is evaluated like any other
