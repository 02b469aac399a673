"""Round-loop plumbing for the baselines on the toy engine: what travels, what is counted,
broadcast extras, per-client ranks and base-weight updates (with exact resume)."""

from __future__ import annotations

import torch
from toy_engine import lora_kwargs, toy_engine, toy_simulator

from fedmllm.aggregators import FedAvg
from fedmllm.aggregators.functional import client_weights, weighted_mean
from fedmllm.aggregators.scaffold import Scaffold
from fedmllm.federation.checkpoint import save_checkpoint
from fedmllm.lora.rank import pad_rank
from fedmllm.methods import FedSALoRAMethod, FFALoRAMethod, LoRAMethod
from fedmllm.types import state_nbytes


class Recording(FedAvg):
    """FedAvg that keeps every round's updates for inspection."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[list] = []

    def aggregate(self, global_state, updates, round_idx):
        self.rounds.append(list(updates))
        return super().aggregate(global_state, updates, round_idx)


class PadAvg(Recording):
    """Stand-in for heterogeneous-rank FedAvg: zero-pad every update to r_max, then average."""

    def __init__(self, r_max: int) -> None:
        super().__init__()
        self.r_max = r_max

    def aggregate(self, global_state, updates, round_idx):
        self.rounds.append(list(updates))
        w = client_weights([u.num_examples for u in updates])
        return weighted_mean([pad_rank(u.state, self.r_max) for u in updates], w)


class ResidualAvg(Recording):
    """Stand-in for FedEx-LoRA: average A and B, fold ``s(mean(B_k A_k) − B̄Ā)`` into W0."""

    def __init__(self, scaling: float) -> None:
        super().__init__()
        self.scaling, self._deltas = scaling, {}

    def aggregate(self, global_state, updates, round_idx):
        new = super().aggregate(global_state, updates, round_idx)
        w = client_weights([u.num_examples for u in updates])
        self._deltas = {}
        for key in (k for k in new if k.endswith("lora_A.weight")):
            b_key, prefix = key.replace("lora_A", "lora_B"), key[: -len("lora_A.weight")]
            prods = [u.state[b_key] @ u.state[key] for u in updates]
            mean_prod = sum(wi.item() * p for wi, p in zip(w, prods, strict=True))
            self._deltas[prefix + "base_layer.weight"] = self.scaling * (
                mean_prod - new[b_key] @ new[key]
            )
        return new

    def base_weight_updates(self):
        return dict(self._deltas)


def _factor_bytes(method, which: str) -> int:
    sizes = [
        layer.r * (layer.in_features if which == "A" else layer.out_features)
        for _, layer in method.lora_layers()
    ]
    return 4 * sum(sizes)


def test_fedsa_update_has_no_b_and_b_stays_in_the_client_store(tmp_path):
    method = FedSALoRAMethod(toy_engine(), **lora_kwargs())
    agg = Recording()
    sim = toy_simulator(method, agg, tmp_path)
    sim.run_round()
    for u in agg.rounds[0]:
        assert u.state and all(k.endswith("lora_A.weight") for k in u.state)
        private, _ = sim.store.get(u.client_id)
        assert private and all(k.endswith("lora_B.weight") for k in private)
    half = _factor_bytes(method, "A")
    assert sim.comm == {"up_bytes": 3 * half, "down_bytes": 3 * half}


def test_ffa_sends_only_b_and_a_is_the_same_everywhere_after_rounds(tmp_path):
    method = FFALoRAMethod(toy_engine(), **lora_kwargs())
    a0 = {k: v for k, v in method.adapter_state().items() if k.endswith("lora_A.weight")}
    agg = Recording()
    sim = toy_simulator(method, agg, tmp_path)
    sim.run_round()
    sim.round += 1
    sim.run_round()
    for u in agg.rounds[0] + agg.rounds[1]:
        assert u.state and all(k.endswith("lora_B.weight") for k in u.state)
    for cid in ("c0", "c1", "c2"):
        sim.swap_in(cid)
        now = method.adapter_state()
        assert all(torch.equal(now[k], a0[k]) for k in a0)
    half = _factor_bytes(method, "B")
    assert sim.comm == {"up_bytes": 6 * half, "down_bytes": 6 * half}


def test_scaffold_control_variate_goes_down_and_deltas_come_up(tmp_path):
    method = LoRAMethod(toy_engine(), scaffold=True, **lora_kwargs())
    seen_updates = []

    class SpyScaffold(Scaffold):
        def aggregate(self, global_state, updates, round_idx):
            seen_updates.append(list(updates))
            return super().aggregate(global_state, updates, round_idx)

    agg = SpyScaffold(num_clients=5)  # as if two more clients existed: c moves by ΣΔc / 5
    sim = toy_simulator(method, agg, tmp_path)
    sim.run_round()
    for key in sim.global_state:
        by_hand = sum(u.extras[key] for u in seen_updates[0]) / 5
        assert by_hand.abs().max() > 0
        torch.testing.assert_close(agg.c[key], by_hand)
    seen = {}
    original = method.begin_client

    def spy(cid, extras):
        seen[cid] = {k: v.clone() for k, v in extras.items()}
        original(cid, extras)

    method.begin_client = spy
    c_after_round0 = {k: v.clone() for k, v in agg.c.items()}
    sim.round += 1
    sim.run_round()
    for cid in ("c0", "c1", "c2"):  # every client trained round 1 knowing c
        assert seen[cid].keys() == c_after_round0.keys()
        assert all(torch.equal(seen[cid][k], c_after_round0[k]) for k in seen[cid])
    n_bytes = state_nbytes(sim.global_state)
    # up: shared state + Δc per client and round; down: state each round, c from round 1 on
    assert sim.comm["up_bytes"] == 2 * 3 * 2 * n_bytes
    assert sim.comm["down_bytes"] == 2 * 3 * n_bytes + 3 * n_bytes


def test_heterogeneous_ranks_send_true_size_factors_and_count_them(tmp_path):
    ranks = {"c0": 1, "c1": 3}  # c2 uses r_max = 3
    method = LoRAMethod(toy_engine(), client_ranks=ranks, **lora_kwargs(r=3, alpha=6.0))
    agg = PadAvg(r_max=3)
    sim = toy_simulator(method, agg, tmp_path)
    g = torch.Generator().manual_seed(0)
    sim.global_state = {k: torch.randn(v.shape, generator=g) for k, v in sim.global_state.items()}
    first = sim.global_state
    sim.run_round()
    by_client = {u.client_id: u.state for u in agg.rounds[0]}
    for cid, r in {"c0": 1, "c1": 3, "c2": 3}.items():
        for k, v in by_client[cid].items():
            assert (v.shape[0] if k.endswith("lora_A.weight") else v.shape[1]) == r
    # c0 started from the first rank-1 components of the global state
    sim.swap_in("c0")
    assert method.lora_layers()[0][1].scaling == 6.0
    full = _factor_bytes(method, "A") + _factor_bytes(method, "B")
    assert sim.comm["down_bytes"] == full // 3 + 2 * full
    assert sim.comm["up_bytes"] == full // 3 + 2 * full
    assert not torch.equal(sim.global_state[next(iter(first))], first[next(iter(first))])


def _residual_run(tmp_path, name: str):
    torch.manual_seed(0)  # the adapter initialisation, as build_components seeds it
    method = LoRAMethod(toy_engine(), **lora_kwargs())
    agg = ResidualAvg(scaling=method.lora_layers()[0][1].scaling)
    sim = toy_simulator(method, agg, tmp_path / name, rounds=3, checkpoint=True)
    return sim, method, agg


def _rounds(sim, until: int) -> None:
    while sim.round < until:
        sim.run_round()
        sim.round += 1


def test_base_weight_updates_reach_the_engine_and_are_counted(tmp_path):
    sim, method, agg = _residual_run(tmp_path, "run")
    layers = dict(method.lora_layers())
    w0 = {n: layer.base_layer.weight.clone() for n, layer in layers.items()}
    sim.run_round()
    s = agg.scaling
    w = client_weights([u.num_examples for u in agg.rounds[0]])
    for name, layer in layers.items():
        a_key, b_key = f"{name}.lora_A.weight", f"{name}.lora_B.weight"
        mean_prod = sum(
            wi.item() * (u.state[b_key] @ u.state[a_key])
            for wi, u in zip(w, agg.rounds[0], strict=True)
        )
        assert not torch.equal(layer.base_layer.weight, w0[name])
        lhs = layer.base_layer.weight + s * sim.global_state[b_key] @ sim.global_state[a_key]
        torch.testing.assert_close(lhs, w0[name] + s * mean_prod)  # FedEx's invariant
    dense = 4 * sum(layer.in_features * layer.out_features for layer in layers.values())
    lora = state_nbytes(sim.global_state)
    # every training client receives the d_out×d_in residual of every layer
    assert sim.comm == {"up_bytes": 3 * lora, "down_bytes": 3 * lora + 3 * dense}


def test_modified_base_weights_resume_exactly(tmp_path):
    full, full_method, _ = _residual_run(tmp_path, "full")
    _rounds(full, 3)
    part, _, _ = _residual_run(tmp_path, "part")
    _rounds(part, 1)
    save_checkpoint(tmp_path / "part" / "last.ckpt", part.checkpoint_payload())
    resumed, resumed_method, _ = _residual_run(tmp_path, "resumed")
    resumed.resume_from(tmp_path / "part")
    assert resumed.base_keys == part.base_keys and resumed.base_keys
    _rounds(resumed, 3)
    keys = sorted(full.base_keys)
    a, b = full_method.base_weights(keys), resumed_method.base_weights(keys)
    assert all(torch.equal(a[k], b[k]) for k in keys)
    assert all(
        torch.equal(full.global_state[k], resumed.global_state[k]) for k in full.global_state
    )
    assert full.comm == resumed.comm


def test_server_round_stats_are_logged_with_the_round(tmp_path):
    class WithStats(FedAvg):
        def round_stats(self):
            return {"cond_max": 3.5}

    sim = toy_simulator(LoRAMethod(toy_engine(), **lora_kwargs()), WithStats(), tmp_path)
    logs = sim.run_round()
    assert logs["server/cond_max"] == 3.5
    assert (
        "server/cond_max"
        not in toy_simulator(
            LoRAMethod(toy_engine(), **lora_kwargs()), FedAvg(), tmp_path
        ).run_round()
    )
