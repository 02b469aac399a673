"""Every fedmllm/configs/aggregator/*.yaml instantiates its rule, with the method's LoRA scaling."""

import pytest
from hydra.utils import instantiate

from fedmllm import aggregators
from fedmllm.configs import CONFIG_DIR as CONFIGS

RULES = {
    "fedavg": aggregators.FedAvg,
    "none": aggregators.NoAggregation,
    "ridge": aggregators.FedA2LoRA,
    "fedadam": aggregators.FedAdam,
    "fedyogi": aggregators.FedYogi,
    "fedadagrad": aggregators.FedAdagrad,
    "flexlora": aggregators.FlexLoRA,
    "fedex": aggregators.FedExLoRA,
    "frlora": aggregators.FRLoRA,
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_aggregator_config_builds_its_rule(make_cfg, rule):
    cfg = make_cfg(
        "fedmed_fedavg", f"aggregator={rule}", "method.alpha=32", "method.use_rslora=true",
        "++aggregator.weighting=uniform",
    )  # fmt: skip
    agg = instantiate(cfg.aggregator)
    assert type(agg) is RULES[rule]
    facts = agg.describe()
    assert facts["weighting"] == "uniform"
    assert facts["aggregator"] == rule
    if isinstance(agg, aggregators.ScaledRule):
        assert (agg.alpha, agg.use_rslora) == (32.0, True)
        assert agg.scaling(4) == pytest.approx(32.0 / 2.0)  # alpha / sqrt(r)


def test_every_rule_has_a_config_file_named_after_it():
    # Other rules' files (added by other issues) may exist; each of these must.
    assert set(RULES) <= {p.stem for p in (CONFIGS / "aggregator").glob("*.yaml")}
    assert all(cls.name == rule for rule, cls in RULES.items())
