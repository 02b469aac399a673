"""DP on the smoke federation: each client's ε against Opacus's accountant, the clipping bound
through a real model (every family's local step, Fed-MoLE here), client-level clipping end to
end, and the membership audit on a finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from fedmllm.build import build_components, make_fabric
from fedmllm.methods.dp_sgd_addon import DPSGD, STEPS_KEY
from fedmllm.privacy.audit import AUDIT_FILE
from fedmllm.privacy.audit import main as audit_main
from fedmllm.privacy.dp_sgd import global_norm
from fedmllm.train import run


def _opacus_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    acc = RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return acc.get_epsilon(delta)


def test_dp_sgd_epsilon_per_client_equals_opacus(make_cfg):
    """Two rounds, two of three clients a round: each client's ε counts only the local steps
    of the rounds it took part in, at q = batch / its train size (smoke: 4 / 8)."""
    cfg = make_cfg(
        "fedmed_fedavg",
        "privacy=dp_sgd",
        "privacy.noise_multiplier=1.3",
        "federation.rounds=3",
        "federation.clients_per_round=2",
        "federation.eval_every=0",
    )
    _, objects = run(cfg)
    results, sim = objects["results"], objects["simulator"]
    taken: dict[str, int] = {}
    for entry in sim.history:
        for cid in entry.get("train", {}):
            taken[cid] = taken.get(cid, 0) + 1
    assert sorted(taken.values()) != [3, 3, 3]  # some client sat out a round
    eps = results["privacy"]["epsilon_per_client"]
    sizes = {c.client_id: len(c.train) for c in objects["components"].train_clients}
    for cid, rounds in taken.items():
        q = cfg.federation.batch_size / sizes[cid]
        steps = rounds * cfg.federation.local_steps
        assert eps[cid] == pytest.approx(_opacus_epsilon(1.3, q, steps, 1e-5)), cid
        private, _ = sim.store.get(cid)  # the step count is the client's own, never sent
        assert private[STEPS_KEY].item() == steps
    assert results["privacy"]["epsilon"] == pytest.approx(max(eps.values()))
    assert json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["privacy"]


def test_dp_sgd_target_epsilon_is_met_by_a_client_of_every_round(make_cfg):
    cfg = make_cfg("fedmed_fedavg", "privacy=dp_sgd", "privacy.target_epsilon=2")
    results = run(cfg)[1]["results"]
    for value in results["privacy"]["epsilon_per_client"].values():
        assert 1.9 < value <= 2.0 + 1e-9


def test_per_sample_clipping_bounds_the_step_gradient_of_mole(make_cfg):
    """σ = 0 and a tiny C: each sample's gradient (experts, routers, LoRA) is scaled to norm
    C, so the step's gradient Σ clip(g_i) / B has norm at most C — and is not zero."""
    clip = 1e-4
    cfg = make_cfg(
        "fedmed_mole", "privacy=dp_sgd", f"privacy.clip={clip}", "privacy.noise_multiplier=0"
    )
    c = build_components(cfg)
    fabric, _ = make_fabric(cfg)
    method = c.method
    dp = next(a for a in method.addons if isinstance(a, DPSGD))
    client = c.train_clients[0]
    dp.set_client(client.client_id)
    dp.begin_local(method.trainable_parameters())
    batch = c.engine.collator(list(client.train[: cfg.federation.batch_size]))
    optimizer = method.configure_optimizers()
    dp.train_step(method, fabric, [batch], 0, optimizer)
    grads = [p.grad for p in method.trainable_parameters().values() if p.grad is not None]
    norm = float(global_norm(grads))
    assert 0 < norm <= clip * (1 + 1e-5)
    # the plain batch gradient is far larger: the bound did the work
    optimizer.zero_grad()
    method.local_loss(batch, 0).backward()
    plain = [p.grad for p in method.trainable_parameters().values() if p.grad is not None]
    assert float(global_norm(plain)) > 100 * clip


@pytest.mark.parametrize("noise_at", ["server", "client"])
def test_client_dp_bounds_the_global_step_by_the_clip_norm(make_cfg, noise_at):
    """σ = 0: the new global state is the mean of updates clipped to S, so it moves by <= S."""
    clip = 1e-3
    cfg = make_cfg(
        "fedmed_fedavg",
        "privacy=dp_client",
        f"privacy.clip={clip}",
        "privacy.noise_multiplier=0",
        f"privacy.noise_at={noise_at}",
        "federation.eval_every=0",
    )
    sim = run(cfg)[1]["simulator"]
    initial = {k: sim.initial_state[k] for k in sim.global_state}
    moved = global_norm([sim.global_state[k] - initial[k] for k in initial])
    assert 0 < float(moved) <= clip * (1 + 1e-4)


def test_audit_writes_membership_auc_per_client(make_cfg):
    cfg = make_cfg("fedmed_fedavg", "federation.eval_every=0")
    run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert audit_main([str(run_dir), "--max-samples", "4"]) == 0
    audit = json.loads((run_dir / AUDIT_FILE).read_text())
    assert set(audit["clients"]) == {"vqa", "report", "detection"}
    for row in audit["clients"].values():
        assert row["n_members"] == row["n_held_out"] == 4
        for model in ("personal", "global"):
            assert 0.0 <= row[model]["auc"] <= 1.0
    # FedAvg shares everything: personalised and global model are the same model
    assert audit["avg_auc"]["personal"] == audit["avg_auc"]["global"]
    assert audit_main([str(run_dir / "missing")]) == 2


def test_unknown_privacy_option_is_refused_before_training(make_cfg):
    cfg = make_cfg("fedmed_fedavg", "privacy=dp_sgd", "+privacy.sigma=1")
    with pytest.raises(ValueError, match="privacy.sigma is not a privacy option"):
        build_components(cfg)
