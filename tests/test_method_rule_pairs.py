"""Every method × rule pair of configs/: the ones that belong together run a round, the others
are refused before the rule is built, with one sentence that names a rule that fits.

The table below is written from what each algorithm is, not read from the code's declarations:
a rule that multiplies B·A (FedA²'s ridge solve, FlexLoRA's SVD) needs both factors; FedEx-LoRA
folds a residual into ``<module>.base_layer.weight``, so every shared pair must sit on an adapted
linear layer (not Fed-MoLE M1's routed experts); Standalone's rule keeps nothing from clients, so
only methods that send nothing go with it, and methods that send nothing go with nothing else;
SCAFFOLD, FRLoRA and FedLEASE are each a client half and a server half that only work together;
modality experts send the experts of their own modalities only, so they need a rule that
averages each tensor over the clients that sent it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from fedmllm.build import build_components, make_simulator
from fedmllm.configs import CONFIG_DIR

CONFIGS = CONFIG_DIR
METHODS = sorted(p.stem for p in (CONFIGS / "method").glob("*.yaml"))
RULES = sorted(p.stem for p in (CONFIGS / "aggregator").glob("*.yaml"))

ROBUST = {"median", "trimmed_mean", "krum", "multikrum", "bulyan", "norm_bounded"}
PLAIN = {"fedavg", "fedadam", "fedyogi", "fedadagrad", "expert_aware"} | ROBUST  # any tensors
PAIRS = {"ridge", "flexlora"}  # both factors of every pair
BASE = {"fedex"}  # pairs on adapted linear layers
FITS = {
    "fedavg": PLAIN | PAIRS | BASE,
    "centralized": PLAIN | PAIRS | BASE,
    "fedprox": PLAIN | PAIRS | BASE,
    "feddpa": PLAIN | PAIRS | BASE,  # its global pair is a LoRA pair on the linear layer
    "lora_2stage": PLAIN | PAIRS | BASE,
    "fedmrg": PLAIN | PAIRS | BASE,  # encoder + generic decoder pairs; head averaged
    "mole": PLAIN | PAIRS | BASE,  # shared expert + plain LoRA travel
    "mole_v1": PLAIN | PAIRS | BASE,
    "mole_m3": PLAIN | PAIRS | BASE,  # + routers: unpaired tensors, averaged
    "mole_m1": PLAIN | PAIRS,  # routed experts travel too: not on a linear layer
    "ffa": PLAIN,  # B alone
    "full_ft": PLAIN,  # whole weights, no LoRA pairs
    "fedsa": PLAIN,  # A alone
    "standalone": {"none"},
    "mole_m2": {"none"},
    "scaffold": {"scaffold"},
    "frlora": {"frlora"},
    "fedlease": {"fedlease"},
    "modality_expert": {"expert_aware"},
    # VeRA sends d and b, not LoRA factors: averaged by any plain rule; FedA²'s ridge solves b
    # in VeRA's form; FlexLoRA's SVD and FedEx-LoRA's residual need LoRA's B·A.
    "vera": PLAIN | {"ridge"},
}


def test_the_table_covers_every_method_config():
    assert set(FITS) == set(METHODS)
    assert set().union(*FITS.values()) <= set(RULES)


@pytest.fixture(scope="module")
def compose_pair(tmp_path_factory):
    cache = tmp_path_factory.mktemp("pairs")

    def _compose(method: str, rule: str):
        overrides = [f"method={method}", f"aggregator={rule}", "benchmark=crossmodal_synth"]
        overrides += ["debug=smoke", "threads=1", "federation.local_steps=1"]
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
        with open_dict(cfg):
            cfg.paths.data_dir = str(cache / "data")
            cfg.paths.output_dir = str(cache / f"{method}-{rule}")
            cfg.logger = None
        return cfg

    return _compose


@pytest.mark.parametrize("method", METHODS)
def test_allowed_pairs_run_a_round_and_the_rest_are_refused(method, compose_pair):
    for rule in RULES:
        cfg = compose_pair(method, rule)
        if rule not in FITS[method]:
            with pytest.raises(ValueError, match="does not work with") as refused:
                build_components(cfg)
            message = str(refused.value)
            assert f"aggregator={rule}" in message
            hint = re.search(r"\(use (.*)\)\.$", message)
            assert hint is not None, message  # a rule that fits is named ...
            assert set(re.findall(r"aggregator=(\w+)", hint.group(1))) == FITS[method], message
            continue
        c = build_components(cfg)
        sim, _ = make_simulator(cfg, c, Path(cfg.paths.output_dir))
        before = {k: v.clone() for k, v in sim.global_state.items()}
        if rule == "bulyan" and len(c.train_clients) < 7:  # needs K >= 4f + 3 = 7
            with pytest.raises(ValueError, match=r"4f\+3"):
                sim.run_round()
            continue
        logs = sim.run_round()
        assert {u.client_id for u in sim.last_updates} == {cl.client_id for cl in c.train_clients}
        sent = sum(t.numel() * t.element_size() for u in sim.last_updates for t in u.state.values())
        extras = sum(
            t.numel() * t.element_size() for u in sim.last_updates for t in u.extras.values()
        )
        assert logs["comm/up_bytes"] == sent + extras
        assert all(torch.isfinite(v).all() for v in sim.global_state.values())
        if rule == "none":
            assert sent == 0 and sim.global_state.keys() == before.keys()
        elif rule != "fedlease":  # FedLEASE's clients send nothing during warm-up
            assert sent > 0
