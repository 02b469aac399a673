"""SecAgg+ on Flower (run config ``secagg=1``) and attacks on Flower nodes.

- The global adapter after SecAgg+ equals plain FedAvg's (the in-process simulator's, which
  ``test_flower_simulation`` shows is bit-for-bit Flower's plain path) within SecAgg+'s
  quantisation error, computed from Flower's own quantisation parameters.
- Rules that need each client's update are refused before any round, in one sentence.
- An attacking client on a Flower node sends what it sends in the simulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flower_helpers import flower_run_config  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fedmllm.aggregators import FedAdam, FedAvg, Krum, NormBoundedMean  # noqa: E402
from fedmllm.deploy.flower.secagg import check_secagg  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER, run_server  # noqa: E402
from fedmllm.deploy.flower.simulation import run_simulation  # noqa: E402
from fedmllm.train import run  # noqa: E402

COMMON = ("threads=1", "federation.eval_every=0", "compare_with=null")


def flower_global(cache_dir: Path, out: Path, *extra: str, **options) -> dict:
    cfg = flower_run_config(cache_dir, out, "fedmed_fedavg", *COMMON, *extra, **options)
    run_simulation(cfg, num_cpus=1)
    return load_file(out / "flower" / GLOBAL_ADAPTER)


def simulator_global(make_cfg, *extra: str) -> dict:
    _, objects = run(make_cfg("fedmed_fedavg", *COMMON, *extra))
    return objects["simulator"].global_state


def test_secagg_equals_fedavg_within_quantisation_error(make_cfg, cache_dir, tmp_path):
    secure = flower_global(cache_dir, tmp_path, secagg=1)  # debug=smoke: one round
    plain = simulator_global(make_cfg)
    assert secure.keys() == plain.keys()
    # Flower's SecAgg+ (flwr.common.secure_aggregation.quantization) maps (n_k / W)·x_k from
    # [-c, c] onto Q integer levels with stochastic rounding: an error below one level, 2c/Q,
    # per client and entry. The server divides the unmasked sum by Σ n_k / W, so each entry
    # of the mean is off by less than K · (2c/Q) · W / Σ n_k (W = 1000, c = 8, Q = 2^22).
    n = [8, 8, 8]  # debug=smoke: 8 training samples for each of the 3 clients
    bound = len(n) * (2 * 8.0 / 2**22) * 1000.0 / sum(n)
    worst = max((secure[k] - plain[k]).abs().max().item() for k in plain)
    assert 0 < worst <= bound, (worst, bound)  # quantised (not bit-equal) but within the bound
    assert any(v.abs().sum() > 0 for k, v in plain.items() if "lora_B" in k)  # it trained


def test_secagg_refuses_rules_that_need_each_update(make_cfg, cache_dir, tmp_path):
    for rule in (Krum(), NormBoundedMean()):
        with pytest.raises(ValueError, match=r"secagg=1 .* only the sum .*aggregator=fedavg"):
            check_secagg(rule, _Method())
    check_secagg(FedAvg(), _Method())  # sum-only rules pass
    check_secagg(FedAdam(), _Method())
    # The same refusal from a ServerApp run before any round (no grid needed).
    cfg = flower_run_config(cache_dir, tmp_path, "fedmed_fedavg", "aggregator=median", secagg=1)
    with pytest.raises(ValueError, match="aggregator=median needs each client's update"):
        run_server(_NoGrid(), cfg)


class _Method:
    name = "fedavg"

    def needs(self) -> frozenset:
        return frozenset()


class _NoGrid:
    run = type("R", (), {"run_id": 0})()


@pytest.mark.slow
def test_attacker_on_a_flower_node_sends_what_it_sends_in_the_simulator(
    make_cfg, cache_dir, tmp_path
):
    flower = flower_global(cache_dir, tmp_path, "attack=sign_flip", "aggregator=median")
    sim = simulator_global(make_cfg, "attack=sign_flip", "aggregator=median")
    clean = simulator_global(make_cfg, "aggregator=median")
    for k, v in sim.items():
        assert torch.equal(flower[k], v.contiguous()), k
    assert any(not torch.equal(sim[k], clean[k]) for k in sim)  # the attack changed something
