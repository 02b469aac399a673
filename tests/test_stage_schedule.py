"""UniFLoW II-stage training: the schedule table, and which parameters each stage really moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from multimodal_helpers import cpu_fabric, make_samples, randomise, tiny_engine

from fedmllm.lora.modules_to_save import ModulesToSaveLinear
from fedmllm.methods.modality_expert_module import ModalityExpertMethod
from fedmllm.methods.multimodal_module import MultimodalLoRAMethod
from fedmllm.methods.stage_schedule import GroupPatterns, StageSchedule

E, P, L_ = "encoder", "projector", "llm"
ENC = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def _table(schedule: StageSchedule, num_steps: int = 8, rounds: int = 1) -> list[str]:
    """One letter per (round, step): I = encoder + projector, II = LLM, A = all."""
    names = {frozenset({E, P}): "I", frozenset({L_}): "II", frozenset({E, P, L_}): "A"}
    return [
        names[schedule.active(s, num_steps, r, rounds)]
        for r in range(rounds)
        for s in range(num_steps)
    ]


def test_schedule_tables():
    assert _table(StageSchedule("two_stage", 0.25)) == ["I"] * 2 + ["II"] * 6
    assert _table(StageSchedule("two_stage", 0.0)) == ["II"] * 8
    assert _table(StageSchedule("two_stage", 1.0)) == ["I"] * 8
    assert _table(StageSchedule("two_stage", 0.3), num_steps=10) == ["I"] * 3 + ["II"] * 7
    assert _table(StageSchedule("reverse", 0.25)) == ["II"] * 6 + ["I"] * 2
    assert _table(StageSchedule("simultaneous")) == ["A"] * 8
    by_round = _table(StageSchedule("by_round"), num_steps=2, rounds=4)
    assert by_round == ["I"] * 4 + ["II"] * 4  # T = 0.5 x 4 rounds = 2
    assert _table(StageSchedule("by_round", switch_round_frac=0.25), 1, 4) == ["I"] + ["II"] * 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"mode": "staged"}, "must be one of"),
        ({"tau": 1.5}, r"tau must lie in \[0, 1\]"),
        ({"switch_round_frac": -0.1}, "switch_round_frac"),
        ({"taus": 0.1}, "unknown stage_schedule keys"),
    ],
)
def test_bad_schedules_are_clear_errors(value, message):
    with pytest.raises(ValueError, match=message):
        StageSchedule.from_config(value)


def test_groups_follow_module_paths():
    g = GroupPatterns()
    assert g.group_of("model.vision_tower.encoder.layers.0.mlp.fc1.lora_A.weight") == E
    assert g.group_of("model.multi_modal_projector.linear_1.modules_to_save.bias") == P
    assert g.group_of("model.language_model.layers.0.self_attn.q_proj.lora_B.weight") == L_


# ------------------------------------------------------------------- on the tiny model
def _method(tmp_path, schedule: dict | None, kind: str = "lora", **kwargs) -> MultimodalLoRAMethod:
    engine = tiny_engine(tmp_path)
    if kind == "modality_expert":  # the same schedule drives modality experts on the LLM
        kwargs["modalities"] = ["ct", "mri", "text"]
    cls = ModalityExpertMethod if kind == "modality_expert" else MultimodalLoRAMethod
    method = cls(
        engine,
        target_modules=["q_proj", "v_proj"],
        r=2,
        alpha=4,
        dropout=0.0,
        encoder_target_modules=ENC,
        projector_modules=["linear_1", "linear_2"],
        stage_schedule=schedule,
        **kwargs,
    )
    # B = 0 would leave every A without gradient in the first step; start from noise instead.
    randomise(method.model, "lora_B", seed=2, scale=0.05)
    return method


def _snapshots(method, samples, num_steps: int) -> tuple[list[dict], dict[str, float]]:
    """One local update (batches of 2): the adapter state before every step and after the last."""
    states: list[dict] = []

    def batches() -> Iterator[dict]:
        for i in range(num_steps):
            states.append(method.adapter_state())  # drawn at the start of step i
            yield method.engine.collator(samples[2 * i : 2 * i + 2])

    opt = method.configure_optimizers()
    metrics = method.local_update(cpu_fabric(), batches(), num_steps, opt, lambda _s: 0.01)
    states.append(method.adapter_state())
    return states, metrics


def _moved(before: dict, after: dict, patterns: GroupPatterns) -> dict[str, bool]:
    """Per group: whether any tensor changed."""
    moved = {E: False, P: False, L_: False}
    for k in before:
        moved[patterns.group_of(k)] |= not torch.equal(before[k], after[k])
    return moved


@pytest.mark.parametrize("kind", ["lora", "modality_expert"])
def test_stage_one_moves_only_encoder_and_projector_stage_two_only_the_llm(tmp_path, kind):
    method = _method(tmp_path, {"mode": "two_stage", "tau": 0.5}, kind)
    states, metrics = _snapshots(method, make_samples("ct", 8), num_steps=4)
    g = method.patterns
    assert _moved(states[0], states[2], g) == {E: True, P: True, L_: False}  # steps 0-1: stage I
    assert _moved(states[2], states[4], g) == {E: False, P: False, L_: True}  # steps 2-3: stage II
    # every kind of tensor of stage I moved, projector bias included
    moved_keys = {k for k in states[0] if not torch.equal(states[0][k], states[2][k])}
    assert any(k.endswith("modules_to_save.bias") for k in moved_keys)
    assert any("vision_tower" in k and k.endswith("lora_A.weight") for k in moved_keys)
    assert metrics["steps_trained"] == 4 and metrics["steps_skipped"] == 0
    assert all(p.requires_grad for n, p in method.model.named_parameters() if "lora_" in n)


@pytest.mark.parametrize(
    ("schedule", "round_idx", "first", "second"),
    [
        ({"mode": "reverse", "tau": 0.5}, 0, {L_}, {E, P}),
        ({"mode": "by_round"}, 0, {E, P}, {E, P}),  # round 0 of 2: stage I all round
        ({"mode": "by_round"}, 1, {L_}, {L_}),
        ({"mode": "simultaneous"}, 0, {E, P, L_}, {E, P, L_}),
    ],
)
def test_schedule_variants_move_the_right_groups(tmp_path, schedule, round_idx, first, second):
    method = _method(tmp_path, schedule)
    method.begin_round(round_idx, 2)
    states, _ = _snapshots(method, make_samples("mri", 8), num_steps=4)
    g = method.patterns
    assert {k for k, v in _moved(states[0], states[2], g).items() if v} == first
    assert {k for k, v in _moved(states[2], states[4], g).items() if v} == second


@pytest.mark.parametrize("kind", ["lora", "modality_expert"])
def test_text_only_batches_skip_stage_one_and_reach_only_the_llm(tmp_path, kind):
    method = _method(tmp_path, {"mode": "two_stage", "tau": 0.5}, kind)
    states, metrics = _snapshots(method, make_samples("text", 8, image=False), num_steps=4)
    assert metrics["steps_skipped"] == 2 and metrics["steps_trained"] == 2
    assert _moved(states[0], states[4], method.patterns) == {E: False, P: False, L_: True}
    state = method.adapter_state()
    sent = method.shared_keys(state)
    assert sent and all(method.patterns.group_of(k) == L_ for k in sent)
    if kind == "modality_expert":  # only the text expert of the LLM layers travels
        assert all(".experts.text." in k for k in sent)
    assert method.private_keys(state) == []
    assert set(method.received_keys(list(state))) == set(sent)


def test_a_schedule_whose_first_stage_trains_nothing_is_refused(tmp_path):
    engine = tiny_engine(tmp_path)
    with pytest.raises(ValueError, match="encoder_target_modules"):
        MultimodalLoRAMethod(engine, ["q_proj"], stage_schedule={"mode": "two_stage"})


def test_modules_to_save_starts_as_the_base_layer_and_trains_a_copy():
    torch.manual_seed(0)
    base = torch.nn.Linear(4, 3)
    layer = ModulesToSaveLinear(base)
    x = torch.randn(5, 4)
    torch.testing.assert_close(layer(x), x @ base.weight.T + base.bias)
    original = base.weight.clone()
    layer(x).sum().backward()
    with torch.no_grad():
        layer.modules_to_save.weight -= layer.modules_to_save.weight.grad
    assert base.weight.grad is None and torch.equal(base.weight, original)
    assert not torch.allclose(layer(x), x @ base.weight.T + base.bias)
