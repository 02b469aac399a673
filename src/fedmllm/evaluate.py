"""The evaluation entry point: ``python -m fedmllm.evaluate ckpt_path=<run dir or last.ckpt>``.

Scores a finished or interrupted run without training (the repository's ``eval.py`` runs
:func:`main`).

The run's own resolved config (``config.yaml`` in the run directory) rebuilds the same
benchmark, engine and method; the checkpoint supplies the global and private adapter tensors.
Evaluated: every client's personalised model and the global model on every client's test
split (the cross-client matrix), so one sees how client i's model does on client j's data.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from fedmllm.build import build_components, make_simulator
from fedmllm.cli_errors import error_line
from fedmllm.config_check import ConfigError, explain_unknown
from fedmllm.federation.checkpoint import CHECKPOINT_NAME
from fedmllm.federation.evaluation import GLOBAL_MODEL
from fedmllm.metrics import MAIN_METRIC
from fedmllm.report import results_table
from fedmllm.run_files import build_results, load_run_config
from fedmllm.utils.io import write_json
from fedmllm.utils.trees import flatten

log = logging.getLogger(__name__)

RESULTS_NAME = "eval_results.json"
TABLES_NAME = "eval_tables.txt"
PREDICTIONS_DIR = "eval_predictions"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _avg(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def matrix_summary(
    matrix: dict[str, dict[str, dict[str, float]]], tasks: dict[str, str]
) -> dict[str, Any]:
    """The cross-client matrix in ``results.json`` form.

    Args:
        matrix: Model id -> test client id -> scores.
        tasks: Test client id -> task (for the main metric of each column).

    Returns:
        ``{"models", "clients", "main": {model: {client: main metric}}, "avg": {model: mean of
        its row's main metrics}, "scores": matrix}``.
    """
    main = {
        m: {c: row[c][MAIN_METRIC[tasks[c]]] for c in tasks if c in row}
        for m, row in matrix.items()
    }
    return {
        "models": list(matrix),
        "clients": list(tasks),
        "main": main,
        "avg": {m: _avg(list(r.values())) for m, r in main.items()},
        "scores": matrix,
    }


def matrix_table(summary: dict[str, Any]) -> Table:
    """Rows: models (global, then each client's personalised model); columns: test splits."""
    table = Table(title="Cross-client matrix: main metric % of model (row) on client's test (col)")
    table.add_column("model \\ test")
    for c in summary["clients"]:
        table.add_column(c, justify="right")
    table.add_column("Avg", justify="right")
    for m in summary["models"]:
        row = summary["main"][m]
        label = "global" if m == GLOBAL_MODEL else f"client {m}"
        cells = [_pct(row[c]) if c in row else "—" for c in summary["clients"]]
        table.add_row(label, *cells, _pct(summary["avg"][m]))
    return table


def global_table(results: dict[str, Any]) -> Table:
    """Per client: personalised model vs global model vs trivial baseline (main metric %)."""
    table = Table(title="Personalised vs global model on each client's own test split")
    for col in ("client", "task", "metric", "personal %", "global %", "trivial %"):
        table.add_column(col, justify="right" if "%" in col else "left")
    glob = results["global"]["clients"]
    for cid, c in results["clients"].items():
        m = c["main_metric"]
        table.add_row(
            cid,
            c["task"],
            m,
            _pct(c["scores"][m]),
            _pct(glob[cid][m]),
            _pct(c["baseline"][m]),
        )
    table.add_row("Avg", "", "", _pct(results["avg"]), _pct(results["global"]["avg"]), "")
    return table


def _locate(ckpt_path: str | Path) -> tuple[Path, Path]:
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (expected a run directory or last.ckpt)")
    run_dir = path if path.is_dir() else path.parent
    ckpt = run_dir / CHECKPOINT_NAME if path.is_dir() else path
    load_run_config(run_dir)  # a missing config.yaml is the clearer error, so check it first
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint {ckpt} (the run saved none yet?)")
    return run_dir, ckpt


def check_overrides(cfg: DictConfig, overrides: DictConfig) -> None:
    """Refuse an override of an option the run's config does not have (a typo would be merged
    in silently); new entries under ``federation.metrics`` / ``metric_options`` are allowed.

    Raises:
        ConfigError: One line with the names that exist there.
    """
    for key in flatten(OmegaConf.to_container(overrides)):
        if key.startswith(("federation.metrics.", "federation.metric_options.")):
            continue
        line = explain_unknown(cfg, key)
        if line is not None:
            raise ConfigError(line)


def evaluate_run(
    ckpt_path: str | Path, overrides: DictConfig | None = None, cross_client: bool = True
) -> dict[str, Any]:
    """Evaluate a run's global model and every client's personalised model.

    Args:
        ckpt_path: A run directory or its ``last.ckpt``.
        overrides: Config entries replacing the run's own (e.g. ``federation.eval_batch_size``
            or ``federation.metrics``).
        cross_client: Score every personalised model on every client's split (the matrix);
            otherwise each only on its own split (and the global model on all).

    Returns:
        The results dict (the run's ``results.json`` layout, whose per-client ``scores`` are
        the personalised models on their own splits, plus ``global``, ``cross_client`` and
        ``evaluated_round``), also written to ``<run dir>/eval_results.json``; predictions go
        to ``<run dir>/eval_predictions/<model>/<client>.jsonl``.
    """
    t0 = time.perf_counter()
    run_dir, ckpt = _locate(ckpt_path)
    cfg = load_run_config(run_dir)
    if overrides is not None:
        check_overrides(cfg, overrides)
        cfg = OmegaConf.merge(cfg, overrides)
    cfg.logger = None
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, run_dir)
    sim.load_state(ckpt)
    log.info("loaded %s (round %d)", ckpt, sim.round)
    ids = [cl.client_id for cl in c.eval_clients]
    if GLOBAL_MODEL in ids:
        raise ValueError(f"a client is named {GLOBAL_MODEL!r}, the global model's id; rename it")
    pred_dir = run_dir / PREDICTIONS_DIR
    matrix = {GLOBAL_MODEL: sim.evaluate_model(GLOBAL_MODEL, pred_dir / GLOBAL_MODEL)}
    if cross_client:
        for cid in ids:
            matrix[cid] = sim.evaluate_model(cid, pred_dir / cid)
        # Same model, batches and metrics as Simulator.evaluate: the diagonal is the run's score.
        scores = {cid: matrix[cid][cid] for cid in ids}
    else:
        scores = sim.evaluate(write_dir=pred_dir / "personal")
    out = sim.ledger.outcome(
        scores, sim.baselines, time.perf_counter() - t0, c.aggregator.describe()
    )
    validation = getattr(c.benchmark, "validation", None)
    results = build_results(
        cfg, sim.method, c.benchmark.name, out, c.eval_clients, validation, c.aggregator
    )
    results["evaluated_round"] = sim.round
    tasks = {cl.client_id: cl.task for cl in c.eval_clients}
    summary = matrix_summary(matrix, tasks)
    results["global"] = {"clients": matrix[GLOBAL_MODEL], "avg": summary["avg"][GLOBAL_MODEL]}
    if cross_client:
        results["cross_client"] = summary
    write_json(run_dir / RESULTS_NAME, results)
    console = Console(record=True)
    console.print(results_table(results))
    console.print(global_table(results))
    if cross_client:
        console.print(matrix_table(summary))
    (run_dir / TABLES_NAME).write_text(console.export_text())
    log.info("evaluation written to %s and %s", run_dir / RESULTS_NAME, run_dir / TABLES_NAME)
    return results


def main(argv: list[str]) -> int:
    """Parse ``key=value`` arguments: ``ckpt_path`` (required), ``cross_client`` (default true)
    and overrides of the run's config."""
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    cli = OmegaConf.from_dotlist(argv)
    ckpt = cli.pop("ckpt_path", None)
    cross_client = cli.pop("cross_client", True)
    if ckpt is None or not isinstance(cross_client, bool):
        log.error(
            "usage: python eval.py ckpt_path=<run dir or last.ckpt> [cross_client=true|false] "
            "[key=value ...]"
        )
        return 2
    try:
        evaluate_run(ckpt, cli if len(cli) else None, cross_client=cross_client)
    except (InstantiationException, FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        log.error("error: %s", error_line(e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
