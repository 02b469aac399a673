"""SecAgg+ on Flower (run config ``secagg=1``) and attacks on Flower nodes, on in-process nodes
(``LocalGrid``: real Flower messages, mods and ClientApps, no Ray); the same on a local
SuperLink with three SuperNodes (slow).

- The global adapter after SecAgg+ equals plain FedAvg's (the in-process simulator's, which
  ``test_flower_apps`` shows is bit-for-bit Flower's plain path) within SecAgg+'s
  quantisation error, computed from Flower's own quantisation parameters; no reply carries
  a tensor in the clear.
- Rules that need each client's update are refused before any round, in one sentence.
- An attacking client on a Flower node sends what it sends in the simulator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flower_helpers import flower_run_config, fresh_runtimes  # noqa: E402, F401
from flwr.app import ArrayRecord, Message  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fedmllm.aggregators import FedAdam, FedAvg, Krum, NormBoundedMean  # noqa: E402
from fedmllm.deploy.flower import node as node_module  # noqa: E402
from fedmllm.deploy.flower.client_app import UPDATE, make_client_app  # noqa: E402
from fedmllm.deploy.flower.local_grid import LocalGrid  # noqa: E402
from fedmllm.deploy.flower.records import get_state  # noqa: E402
from fedmllm.deploy.flower.secagg import check_secagg  # noqa: E402
from fedmllm.deploy.flower.server_app import GLOBAL_ADAPTER, run_server  # noqa: E402
from fedmllm.train import run  # noqa: E402

COMMON = ("threads=1", "federation.eval_every=0", "compare_with=null")
N_TRAIN = [8, 8, 8]  # debug=smoke: 8 training samples for each of fedmed_synth's 3 clients


def flower_global(
    cache_dir: Path, out: Path, *extra: str, replies=None, experiment="fedmed_fedavg", **options
) -> dict:
    """Run ``experiment`` (smoke) on three in-process Flower nodes; the final global adapter.
    ``replies``: a list that collects every reply the server pulls."""
    cfg = flower_run_config(cache_dir, out, experiment, *COMMON, *extra, **options)
    nodes = [{"partition-id": i, "state-dir": str(out / "nodes")} for i in range(3)]
    grid = LocalGrid(make_client_app(cfg), nodes, cfg)
    if replies is not None:
        pull = grid.pull_messages

        def spy(ids):
            got = list(pull(ids))
            replies.extend(got)
            return got

        grid.pull_messages = spy
    run_server(grid, cfg)
    return load_file(out / "flower" / GLOBAL_ADAPTER)


def quantisation_bound(n: list[int], clip=8.0, levels=2**22, max_weight=1000.0) -> float:
    """Flower's SecAgg+ (flwr.common.secure_aggregation.quantization) maps (n_k / W)·x_k from
    [-c, c] onto Q integer levels with stochastic rounding: an error below one level, 2c/Q,
    per client and entry. The server divides the unmasked sum by Σ n_k / W, so each entry of
    the mean is off by less than K · (2c/Q) · W / Σ n_k."""
    return len(n) * (2 * clip / levels) * max_weight / sum(n)


def simulator_global(make_cfg, *extra: str) -> dict:
    _, objects = run(make_cfg("fedmed_fedavg", *COMMON, *extra))
    return objects["simulator"].global_state


def test_secagg_equals_fedavg_within_quantisation_error(make_cfg, cache_dir, tmp_path):
    replies: list[Message] = []
    secure = flower_global(cache_dir, tmp_path, secagg=1, replies=replies)  # one round
    plain = simulator_global(make_cfg)
    assert secure.keys() == plain.keys()
    worst = max((secure[k] - plain[k]).abs().max().item() for k in plain)
    bound = quantisation_bound(N_TRAIN)
    assert 0 < worst <= bound, (worst, bound)  # quantised (not bit-equal), within the bound
    assert any(v.abs().sum() > 0 for k, v in plain.items() if "lora_B" in k)  # it trained
    # The four SecAgg+ stages ran on every node, and no train reply carried a tensor.
    train = [r for r in replies if r.metadata.message_type == "train"]
    assert len(train) == 4 * 3
    for reply in train:
        arrays = [v for v in reply.content.values() if isinstance(v, ArrayRecord)]
        assert all(len(a) == 0 for a in arrays)


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


@pytest.mark.parametrize(
    ("extra", "options"),
    [(("attack=sign_flip",), {}), ((), {"secagg": 1})],
    ids=["attack", "secagg"],
)
def test_private_tensors_never_leave_a_node_under_attack_or_secagg(
    cache_dir, tmp_path, extra, options
):
    """The existing check (test_flower_apps) under the new options: an attacking client sends
    only (tampered) shared tensors, a SecAgg+ client no tensor in the clear at all."""
    replies: list[Message] = []
    flower_global(cache_dir, tmp_path, *extra, replies=replies, experiment="fedmed_mole", **options)
    runtime = next(iter(node_module._RUNTIMES.values()))
    train = [r for r in replies if r.metadata.message_type == "train"]
    assert train
    for reply in train:
        sent = {k for v in reply.content.values() if isinstance(v, ArrayRecord) for k in v}
        if options:
            assert sent == set()
            continue
        cid = str(reply.content["config"]["client-id"])
        private, _ = runtime.trainer.store.get(cid)
        assert private and sent and not sent & set(private)
        assert sent == set(get_state(reply.content, UPDATE))


class _Method:
    name = "fedavg"

    def needs(self) -> frozenset:
        return frozenset()


class _NoGrid:
    run = type("R", (), {"run_id": 0})()


def test_attacker_on_a_flower_node_sends_what_it_sends_in_the_simulator(
    make_cfg, cache_dir, tmp_path
):
    flower = flower_global(cache_dir, tmp_path, "attack=sign_flip", "aggregator=median")
    sim = simulator_global(make_cfg, "attack=sign_flip", "aggregator=median")
    clean = simulator_global(make_cfg, "aggregator=median")
    for k, v in sim.items():
        assert torch.equal(flower[k], v.contiguous()), k
    assert any(not torch.equal(sim[k], clean[k]) for k in sim)  # the attack changed something


@pytest.mark.slow
def test_secagg_on_a_superlink_with_three_supernodes(make_cfg, cache_dir, tmp_path):
    """The same check on a real local deployment (``flwr run``, insecure, 127.0.0.1)."""
    from test_flower_deployment import Federation, deploy_overrides

    fed = Federation(cache_dir, tmp_path)
    out = tmp_path / "deploy"  # not make_cfg's tmp_path / "run"
    try:
        fed.start()
        fed.submit(
            deploy_overrides("fedmed_fedavg", cache_dir, tmp_path, out, rounds=1),
            "secagg=1 round-timeout=120.0 node-wait=120.0",
        )
        # six ClientApp processes per node (hello, four SecAgg+ stages, evaluation)
        fed.wait_for_results(out, "the SecAgg+ run did not finish", timeout=900)
    finally:
        stray = fed.shut_down()
    fed.assert_nothing_left(stray)
    secure = load_file(out / GLOBAL_ADAPTER)
    plain = simulator_global(make_cfg)
    worst = max((secure[k] - plain[k]).abs().max().item() for k in plain)
    assert 0 < worst <= quantisation_bound(N_TRAIN), worst
    results = json.loads((out / "results.json").read_text())
    assert results["deploy"]["mode"] == "deployment"
    assert [h.get("secagg") for h in results["history"] if "aggregated" in h] == [True]
