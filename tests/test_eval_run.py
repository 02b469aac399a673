"""eval.py on a smoke run: reproduces the run, adds the global model and the cross-client
matrix, and takes extra metrics (an LLM judge over HTTP) through config overrides."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fedmllm.evaluate import evaluate_run
from fedmllm.train import run


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that gives every report 3 and counts the requests."""

    prompts: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.prompts.append(body["messages"][0]["content"])
        reply = {"choices": [{"message": {"content": "Score: 3\nReason: partial."}}]}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(reply).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def judge_url() -> Iterator[str]:
    _Judge.prompts = []
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_eval_reproduces_the_run_adds_global_and_matrix_and_a_judge(make_cfg, judge_url):
    # Prepare: a FedAvg smoke run. FedAvg keeps nothing private, so every client's
    # personalised model IS the global model: every row of the matrix must be the same.
    cfg = make_cfg("fedmed_fedavg")
    _, objects = run(cfg)
    trained = {c: v["scores"] for c, v in objects["results"]["clients"].items()}
    run_dir = Path(cfg.paths.output_dir)
    overrides = OmegaConf.create(
        {
            "federation": {
                "metrics": {"report": ["bleu", "rouge", "judge"]},
                "metric_options": {"judge": {"backend": "openai", "base_url": judge_url}},
            }
        }
    )
    overrides.federation.metric_options.judge.model = "judge-model"
    # Execute
    results = evaluate_run(run_dir, overrides)
    # Assert: the run's own final scores, exactly (the judge only adds keys to the report).
    for cid, scores in trained.items():
        evaluated = results["clients"][cid]["scores"]
        assert {k: evaluated[k] for k in scores} == scores
    report = results["clients"]["report"]
    assert report["scores"]["judge"] == 3.0 and report["scores"]["judge_unparsable"] == 0
    assert "judge" not in report["baseline"]  # the trivial baseline skips model-based metrics
    matrix = results["cross_client"]["scores"]
    assert set(matrix) == {"global", "vqa", "report", "detection"}
    assert all(row == matrix["global"] for row in matrix.values())
    assert results["global"]["clients"] == matrix["global"]
    test_size = cfg.benchmark.test_size
    assert len(_Judge.prompts) == 4 * test_size  # 4 models x the report client's test split
    lines = (run_dir / "eval_predictions" / "vqa" / "report.jsonl").read_text().splitlines()
    assert len(lines) == test_size
    assert json.loads(lines[0])["scores"]["judge"] == 3.0
    assert "Cross-client matrix" in (run_dir / "eval_tables.txt").read_text()
    on_disk = json.loads((run_dir / "eval_results.json").read_text())
    assert on_disk["cross_client"]["main"] == results["cross_client"]["main"]
    # Without the matrix: each personalised model on its own split, and the global model.
    own = evaluate_run(run_dir, cross_client=False)
    assert {c: v["scores"] for c, v in own["clients"].items()} == trained
    assert "cross_client" not in own
    for cid, scores in own["global"]["clients"].items():  # (no judge keys this time)
        assert {k: matrix["global"][cid][k] for k in scores} == scores
