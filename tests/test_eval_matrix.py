"""Simulator evaluation with a scripted method: personalised vs global models, the cross-client
matrix, per-client metric choice, per-task generation budgets, the predictions file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fedmllm.aggregators import FedAvg
from fedmllm.data.schema import Sample
from fedmllm.federation import FederationConfig, Simulator
from fedmllm.federation.config import Client
from fedmllm.federation.evaluation import GLOBAL_MODEL
from fedmllm.metrics import METRIC_KEYS
from fedmllm.protocol import FederatedMethod


class DigitMethod(FederatedMethod):
    """Answers every question with its private tensor ``p`` written as a number.

    Local training sets ``p`` (private) and ``s`` (shared) to the client's number ``k``, read
    from the batch; the initial ``p`` is 0. So client k's personalised model answers "k" and
    the global model (initial private tensors) answers "0".
    """

    def __init__(self) -> None:
        self.state = {"s": torch.zeros(1), "p": torch.zeros(1)}
        self.budgets: list[int] = []

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.state.items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.state[k].copy_(v)

    def shared_keys(self, state: dict[str, torch.Tensor]) -> list[str]:
        return ["s"]

    def private_keys(self, state: dict[str, torch.Tensor]) -> list[str]:
        return ["p"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    def local_update(
        self,
        fabric: Any,
        batches: Iterator[dict[str, Any]],
        num_steps: int,
        optimizer: Any,
        lr_at: Callable,
    ) -> dict[str, float]:
        k = float(next(batches)["samples"][0].meta["k"])
        self.state["p"].fill_(k)
        self.state["s"].fill_(k)
        return {"loss": 0.0}

    def predict(self, batch: dict[str, Any], max_new_tokens: int) -> list[str]:
        self.budgets.append(max_new_tokens)
        return [str(int(self.state["p"].item()))] * len(batch["samples"])

    def eval(self) -> None:
        pass

    def train(self) -> None:
        pass


class Batcher:
    def __init__(self) -> None:
        self.collator = self.gen_collator = lambda samples: {"samples": list(samples)}


def _sample(k: int, answer: str) -> Sample:
    return Sample(None, "ct", f"which client? ({k})", answer, "vqa", meta={"k": k})


def _simulator(tmp_path: Path, **cfg: Any) -> tuple[Simulator, DigitMethod]:
    clients = [
        Client(f"c{k}", "vqa", [_sample(k, str(k))] * 2, [_sample(k, str(k))] * 3)
        for k in (1, 2, 3)
    ]
    method = DigitMethod()
    config = FederationConfig(rounds=1, local_steps=1, batch_size=1, eval_batch_size=2, **cfg)
    sim = Simulator(None, Batcher(), method, FedAvg(), clients, config, tmp_path)
    return sim, method


def test_matrix_rows_are_the_right_models_and_the_diagonal_is_the_personalised_score(
    tmp_path: Path,
) -> None:
    # Prepare: one round, so each client's private p is its number.
    sim, _ = _simulator(tmp_path)
    sim.run_round()
    # Execute
    own = sim.evaluate()
    rows = {m: sim.evaluate_model(m) for m in (GLOBAL_MODEL, "c1", "c2", "c3")}
    # Assert: client i's model answers "i": exact match 1 on its own split only; the global
    # model answers "0" everywhere.
    for m, row in rows.items():
        for cid, scores in row.items():
            assert scores["em"] == float(m == cid), (m, cid)
    assert {cid: s["em"] for cid, s in own.items()} == {"c1": 1.0, "c2": 1.0, "c3": 1.0}
    assert all(rows[cid][cid] == own[cid] for cid in own)
    with pytest.raises(KeyError, match="c9"):
        sim.evaluate_model("c9")


def test_predictions_file_has_per_sample_scores(tmp_path: Path) -> None:
    sim, _ = _simulator(tmp_path)
    sim.run_round()
    sim.evaluate_model("c1", write_dir=tmp_path / "preds")
    lines = [json.loads(x) for x in (tmp_path / "preds" / "c2.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    assert lines[0]["question"] == "which client? (2)" and lines[0]["prediction"] == "1"
    assert lines[0]["answer"] == "2" and "answer_type" not in lines[0]
    # "1" vs "2": not closed (no yes/no reference, no answer_type) -> open recall 0.
    assert lines[0]["scores"] == {"em": 0.0, "em_strict": 0.0, "open_recall": 0.0, "token_acc": 0.0}
    assert not list((tmp_path / "preds").glob(".*tmp"))  # written atomically, nothing left over


def test_metrics_chosen_per_client_then_per_task_then_default(tmp_path: Path) -> None:
    sim, _ = _simulator(tmp_path, metrics={"c2": ["em"], "vqa": ["em", "token_acc"]})
    scores = sim.evaluate()
    assert set(scores["c2"]) == {"em"}
    assert set(scores["c1"]) == {"em", "token_acc"}
    sim_default, _ = _simulator(tmp_path)
    assert tuple(sim_default.evaluate()["c3"]) == METRIC_KEYS["vqa"]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"c1": ["em", "meteor"]}, "unknown metric"),
        ({"vqa": ["token_acc"]}, "client 'c1'.*main metric 'em'"),
        ({"c3": "em"}, "list of names"),
    ],
)
def test_bad_metric_choices_fail_when_the_simulator_is_built(
    tmp_path: Path, metrics: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _simulator(tmp_path, metrics=metrics)


def test_generation_budget_is_per_task(tmp_path: Path) -> None:
    sim, method = _simulator(tmp_path, max_new_tokens={"vqa": 7, "report": 99})
    sim.evaluate()
    assert set(method.budgets) == {7}
    sim_missing, _ = _simulator(tmp_path, max_new_tokens={"report": 99})
    with pytest.raises(ValueError, match="max_new_tokens has no entry for task 'vqa'"):
        sim_missing.evaluate()


def test_null_entries_mean_not_chosen(tmp_path: Path) -> None:
    sim, _ = _simulator(tmp_path, metrics={"vqa": None, "c2": ["em"]})
    scores = sim.evaluate()
    assert tuple(scores["c1"]) == METRIC_KEYS["vqa"] and set(scores["c2"]) == {"em"}


def test_benchmark_chooses_metrics_and_config_overrides_it(make_cfg, monkeypatch) -> None:
    import fedmllm.data.synthmed as synthmed
    from fedmllm.build import build_components

    original = synthmed.load_fedmed_synth

    def with_choice(*args: Any, **kwargs: Any) -> Any:
        bench = original(*args, **kwargs)
        bench.metrics = {"vqa": ["em", "closed"], "report": ["rouge"]}
        return bench

    monkeypatch.setattr(synthmed, "load_fedmed_synth", with_choice)
    cfg = make_cfg("fedmed_fedavg", "federation.metrics.report=[bleu,rouge]")
    metrics = build_components(cfg).federation.metrics
    assert metrics == {"vqa": ["em", "closed"], "report": ["bleu", "rouge"]}
