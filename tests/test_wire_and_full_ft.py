"""Wire precision (``federation.wire_dtype``) and full fine-tuning (``method=full_ft``)."""

from __future__ import annotations

import pytest
import torch
from toy_engine import lora_kwargs, toy_engine, toy_simulator

from fedmllm.aggregators import FedAvg
from fedmllm.federation.wire import from_wire, to_wire, wire_dtype
from fedmllm.methods import FullFineTuneMethod, LoRAMethod


def test_wire_casts_floating_tensors_only_and_decodes_to_float32():
    state = {"w": torch.tensor([1.0 + 2**-10, -3.14159]), "i": torch.tensor([7])}
    sent = to_wire(state, torch.bfloat16)
    assert sent["w"].dtype == torch.bfloat16 and sent["i"].dtype == torch.int64
    back = from_wire(sent)
    # bfloat16 keeps 8 bits of mantissa: 1 + 2^-10 rounds to 1, pi to 3.140625.
    assert back["w"].dtype == torch.float32
    assert back["w"].tolist() == [1.0, -3.140625]
    assert to_wire(state, torch.float32)["w"] is state["w"]  # float32 wire: no copy
    with pytest.raises(ValueError, match="federation.wire_dtype"):
        wire_dtype("float8")


def _round(wire: str, tmp_path):
    method = LoRAMethod(toy_engine(), **lora_kwargs())
    sim = toy_simulator(method, FedAvg(), tmp_path / wire, rounds=1, wire_dtype=wire)
    before = {k: v.clone() for k, v in sim.global_state.items()}
    sim.run_round()
    return sim, before


@pytest.mark.parametrize("wire", ["bfloat16", "float16"])
def test_sixteen_bit_wire_halves_the_bytes_and_the_server_averages_what_arrived(wire, tmp_path):
    full, _ = _round("float32", tmp_path)
    half, before = _round(wire, tmp_path)
    assert half.ledger.comm["up_bytes"] * 2 == full.ledger.comm["up_bytes"]
    assert half.ledger.comm["down_bytes"] * 2 == full.ledger.comm["down_bytes"]
    sent = half.last_updates
    assert all(t.dtype == wire_dtype(wire) for u in sent for t in u.state.values())
    n = torch.tensor([u.num_examples for u in sent], dtype=torch.float64)
    for key, value in half.global_state.items():  # FedAvg of the 16-bit values, by hand
        by_hand = sum(w * u.state[key].double() for w, u in zip(n / n.sum(), sent, strict=True))
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, by_hand.float(), rtol=0, atol=1e-7)
        assert not torch.equal(value, before[key])


def test_full_fine_tuning_trains_and_sends_every_language_model_weight(tmp_path):
    engine = toy_engine()
    method = FullFineTuneMethod(engine, module_filter="language_model", grad_clip=0.0)
    lm = {n: p for n, p in engine.model.named_parameters() if "language_model" in n}
    assert set(method.trainable_parameters()) == set(lm)  # the head and embeddings stay frozen
    sim = toy_simulator(method, FedAvg(), tmp_path, rounds=1)
    sim.run_round()
    (update, *_) = sim.last_updates
    assert set(update.state) == set(lm)
    per_client = sum(p.numel() * p.element_size() for p in lm.values())
    assert sim.ledger.comm["up_bytes"] == 3 * per_client  # three clients, every weight
    assert any(not torch.equal(sim.global_state[k], sim.initial_state[k]) for k in lm)
    with pytest.raises(ValueError, match="method.max_params"):
        FullFineTuneMethod(toy_engine(), max_params=10)
