"""Leakage audit of a finished run: ``python -m fedmllm.privacy.audit <run dir>``.

For every training client, a loss-threshold membership-inference attack (``privacy.mia``)
tells ``n`` of its training samples from ``n`` of its held-out test samples (n = the smaller
split, at most ``--max-samples``; members drawn with a fixed seed), once with the client's
personalised model (global shared + its private tensors) and once with the global model
(initial adapters + the global shared tensors). The AUCs go to ``<run dir>/audit.json`` and a
table; with DP they are ε's empirical counterpart (0.5 = no measurable leakage).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedmllm.build import build_components, make_simulator
from fedmllm.federation.checkpoint import CHECKPOINT_NAME
from fedmllm.privacy.mia import loss_threshold_auc, model_losses
from fedmllm.run_files import load_run_config
from fedmllm.utils.io import write_json

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"


def _split(client: Any, max_samples: int, seed: int) -> tuple[list[Any], list[Any]]:
    n = min(len(client.train), len(client.test), max_samples)
    rng = random.Random(seed)
    members = rng.sample(list(client.train), n)
    return members, list(client.test)[:n]


def audit_run(run_dir: str | Path, max_samples: int = 200, threads: int = 1) -> dict[str, Any]:
    """Membership AUC per training client, personalised and global model; written to
    ``<run dir>/audit.json``.

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.yaml`` or no checkpoint.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT_NAME
    cfg = load_run_config(run_dir)
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint {ckpt}: the audit needs a run that saved one")
    cfg.logger = None
    cfg.threads = threads
    c = build_components(cfg)
    sim, _ = make_simulator(cfg, c, run_dir)
    sim.load_state(ckpt)
    collator = c.engine.collator
    clients: dict[str, Any] = {}
    sim.method.eval()
    try:
        for client in c.train_clients:
            members, held_out = _split(client, max_samples, cfg.seed)
            row: dict[str, Any] = {"n_members": len(members), "n_held_out": len(held_out)}
            for model in ("personal", "global"):
                if model == "global":
                    sim.method.load_adapter_state({**sim.initial_state, **sim.global_state})
                else:
                    sim.swap_in(client.client_id)
                m = model_losses(sim.method, collator, members)
                h = model_losses(sim.method, collator, held_out)
                row[model] = {
                    "auc": loss_threshold_auc(m, h),
                    "member_loss": sum(m) / len(m),
                    "held_out_loss": sum(h) / len(h),
                }
            clients[client.client_id] = row
    finally:
        sim.method.train()
    avg = {
        m: sum(r[m]["auc"] for r in clients.values()) / len(clients) for m in ("personal", "global")
    }
    out = {"run_dir": str(run_dir), "round": sim.round, "clients": clients, "avg_auc": avg}
    results = run_dir / "results.json"
    if results.is_file():
        import json

        out["privacy"] = json.loads(results.read_text()).get("privacy")
    write_json(run_dir / AUDIT_FILE, out)
    return out


def audit_table(audit: dict[str, Any]) -> Table:
    """The audit as a table: per client, AUC and mean losses of both models."""
    table = Table(title=f"membership inference (loss threshold) — {audit['run_dir']}")
    for col in ("client", "n", "AUC personal", "AUC global", "loss train/held-out (personal)"):
        table.add_column(col, justify="left" if col == "client" else "right")
    for cid, r in audit["clients"].items():
        p, g = r["personal"], r["global"]
        table.add_row(
            cid,
            str(r["n_members"]),
            f"{p['auc']:.3f}",
            f"{g['auc']:.3f}",
            f"{p['member_loss']:.3f} / {p['held_out_loss']:.3f}",
        )
    avg = audit["avg_auc"]
    table.add_row("Avg", "", f"{avg['personal']:.3f}", f"{avg['global']:.3f}", "", style="bold")
    return table


def main(argv: list[str]) -> int:
    """``python -m fedmllm.privacy.audit <run dir> [--max-samples N] [--threads T]``."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    parser = argparse.ArgumentParser(prog="python -m fedmllm.privacy.audit")
    parser.add_argument("run_dir", help="a finished run's directory (config.yaml + last.ckpt)")
    parser.add_argument("--max-samples", type=int, default=200, help="members per client")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    try:
        audit = audit_run(args.run_dir, args.max_samples, args.threads)
    except (FileNotFoundError, KeyError, ValueError) as err:
        log.error("error: %s", err)
        return 2
    Console().print(audit_table(audit))
    log.info("audit written to %s", Path(args.run_dir) / AUDIT_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
