"""Cost dry run: what a federation will send and need, before any GPU hour is spent.

``python -m fedmllm.cost experiment=fedmed_mole model=llava_1_5_7b [--wire-dtype bfloat16]``
composes the same config as ``train.py``, builds the model's architecture on the meta device
from the shipped ``config.json`` (no weights, no download), injects the method's adapters
through the method config, and runs the server rule once on a miniature of the shared state
with the same keys, so every rule's extra traffic (SCAFFOLD's control variates, FedEx-LoRA's
dense residual, ...) is found by the rule itself. It prints per client and per round the
trainable parameters and the bytes up and down at the wire dtype, the whole run's traffic, the
same for full fine-tuning, and a peak-GPU-memory estimate (``fedmllm.models.memory_estimate``).

Traffic follows the simulator's accounting: a sampled client sends its shared tensors plus
its extras and receives the global tensors it needs plus the server's broadcast extras; base
weight updates go to every training client. Floating tensors travel at the wire dtype.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.table import Table

from fedmllm.configs import compose_train
from fedmllm.cost_traffic import Traffic, count_traffic, full_ft_traffic
from fedmllm.federation.sampling import sample_clients
from fedmllm.federation.wire import WIRE_DTYPES
from fedmllm.federation.wire import wire_dtype as federation_wire_dtype
from fedmllm.lora.state import adapter_parameter_names
from fedmllm.models.arch import arch_config, build_model, image_tokens
from fedmllm.models.hf import parse_dtype
from fedmllm.models.memory_estimate import decoder_dims, estimate_peak, training_shape

TEXT_TOKENS = 128  # question + answer tokens beside the image tokens, per sample


def compose_config(overrides: list[str]) -> DictConfig:
    """The train config with Hydra command-line ``overrides`` (e.g. ``experiment=...``)."""
    return compose_train(overrides)


def client_count(cfg: DictConfig, override: int | None) -> int:
    """Training clients: ``--clients``, else what the benchmark config says.

    One pooled client for Centralized. With the default ``source`` partition, one client per
    source: the benchmark's ``clients`` mapping (real data), its ``modalities`` (cross-modal)
    or ``partition.num_clients`` (the synthetic benchmarks set it to their source count);
    other schemes split into ``partition.num_clients``. Anything else needs ``--clients``.
    """
    if override is not None:
        return override
    if cfg.method.get("pooled"):
        return 1
    bench = cfg.benchmark
    part = bench.get("partition") or {}
    if part.get("scheme", "source") != "source":
        if part.get("sources"):
            raise ValueError("a partition of some sources only: pass --clients N")
        return int(part["num_clients"])
    sources = bench.get("clients") or bench.get("modalities")
    if isinstance(sources, (DictConfig, ListConfig)) and len(sources):
        return len(sources)
    if part.get("num_clients"):
        return int(part["num_clients"])
    raise ValueError("the benchmark config does not say how many clients: pass --clients N")


@contextmanager
def _cpu_generators_for_meta() -> Iterator[None]:
    """Let a method seed its initialisation on a meta model (``torch.Generator(device=meta)``
    does not exist): the generator is made on the CPU; meta tensors ignore its draws anyway."""
    real = torch.Generator

    def generator(device: Any = None) -> torch.Generator:
        return real(device="cpu" if str(device) == "meta" else device)

    torch.Generator = generator  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        torch.Generator = real  # type: ignore[misc]


def architecture(cfg: DictConfig) -> str:
    """What train.py would load: a local ``model.path`` holding a config.json, else the
    shipped architecture named by ``model.arch``."""
    path = cfg.model.get("path")
    if path and (Path(str(path)).expanduser() / "config.json").is_file():
        return str(path)
    arch = cfg.model.get("arch")
    if not arch:
        raise ValueError(
            "the cost dry run needs an architecture: a named model config (model=llava_1_5_7b, "
            "...), model.arch=<shipped name>, or model.path=<local folder with config.json>"
        )
    return str(arch)


def meta_method(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """``(model, method, config)``: the architecture on meta with the method's adapters in."""
    config = arch_config(architecture(cfg))
    dtype = parse_dtype(cfg.model.get("dtype"))
    model = build_model(config, dtype if isinstance(dtype, torch.dtype) else torch.bfloat16)
    engine = SimpleNamespace(model=model, collator=None, gen_collator=None, tokenizer=None)
    with _cpu_generators_for_meta():
        method = instantiate(cfg.method, _partial_=True)(engine=engine)
    return model, method, config


def parameter_roles(model: Any, cfg: DictConfig) -> dict[str, int]:
    """Parameter counts: total, language model (+ head), adapters, trainable, frozen adapters."""
    adapters = set(adapter_parameter_names(model))
    params = dict(model.named_parameters())
    head = [str(h) for h in (cfg.model.get("head") or [])]
    head_params = sum(p.numel() for n, p in params.items() if n.split(".")[0] in head)
    language = cfg.model.get("modules", {}).get("language") or "language_model"
    trainable = sum(params[n].numel() for n in adapters if params[n].requires_grad)
    adapter_total = sum(params[n].numel() for n in adapters)
    base = {n: p.numel() for n, p in params.items() if n not in adapters}
    in_language = re.compile(rf"({language})|^lm_head\.")
    return {
        "total": sum(base.values()),
        "language_model": sum(v for n, v in base.items() if in_language.search(n)),
        "head": head_params,
        "adapter": adapter_total,
        "trainable": trainable + head_params,
        "frozen_adapter": adapter_total - trainable,
    }


def memory(cfg: DictConfig, model: Any, config: Any, roles: dict[str, int]) -> dict[str, Any]:
    """The peak-memory estimate of one client's training step."""
    seq = image_tokens(config, cfg.model.get("processor_kwargs")) + TEXT_TOKENS
    dtype = parse_dtype(cfg.model.get("dtype"))
    shape = training_shape(
        model,
        config,
        language=cfg.model.get("modules", {}).get("language") or "language_model",
        tokens=int(cfg.federation.batch_size) * seq,
        dtype_bytes=dtype.itemsize if isinstance(dtype, torch.dtype) else 2,
        quantization=cfg.model.get("quantization"),
        gradient_checkpointing=bool(cfg.model.get("gradient_checkpointing")),
        head_params=roles["head"],
        adapter_act_bytes=2 if "16" in str(cfg.fabric.get("precision", "")) else 4,
    )
    return {**estimate_peak(decoder_dims(config), shape), "seq_len": seq}


def dry_run(
    overrides: list[str], wire_dtype: str | None = None, clients: int | None = None
) -> dict[str, Any]:
    """The whole cost report of a composed config (see the module docstring).

    Args:
        overrides: Hydra overrides, as for ``train.py``.
        wire_dtype: Dtype floating tensors travel in (``float32``, ``bfloat16``, ``float16``);
            ``None``: the config's ``federation.wire_dtype`` when it has one, else float32.
        clients: Number of training clients (default: the benchmark's).

    Returns:
        A JSON-ready dict: ``params``, ``per_client``, ``per_round``, ``run``, ``full_ft``,
        ``memory`` and the settings used.
    """
    cfg = compose_config(overrides)
    wire_dtype = wire_dtype or str(cfg.federation.get("wire_dtype") or "float32")
    model, method, config = meta_method(cfg)
    aggregator = instantiate(cfg.aggregator)
    k = client_count(cfg, clients)
    ids = [str(i) for i in range(k)]
    sampled = len(sample_clients(ids, 0, 0, cfg.federation.get("clients_per_round")))
    rounds = int(cfg.federation.rounds)
    wire = federation_wire_dtype(wire_dtype)
    roles = parameter_roles(model, cfg)
    traffic: Traffic = count_traffic(method, aggregator, model, k, wire)
    return {
        "model": architecture(cfg),
        "method": str(cfg.method.get("name")),
        "aggregator": type(aggregator).__name__,
        "wire_dtype": wire_dtype,
        "clients": k,
        "clients_per_round": sampled,
        "rounds": rounds,
        "params": roles,
        **traffic.report(k, sampled, rounds),
        "full_ft": {
            "language_model": full_ft_traffic(roles["language_model"], wire, k, sampled, rounds),
            "whole_model": full_ft_traffic(roles["total"], wire, k, sampled, rounds),
        },
        "memory": memory(cfg, model, config, roles),
    }


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """The report as three small tables (parameters and traffic, full FT, memory)."""
    console = console or Console()
    p, c, r, run = report["params"], report["per_client"], report["per_round"], report["run"]
    title = (
        f"{report['model']} · {report['method']} · {report['aggregator']} · wire "
        f"{report['wire_dtype']} · {report['clients']} clients ({report['clients_per_round']} "
        f"per round) · {report['rounds']} rounds"
    )
    table = Table(title=title)
    for col in ("", "params", "up", "down", "total"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("trainable / client", f"{p['trainable'] / 1e6:.2f} M", "", "", "")
    table.add_row(
        "per client, per round",
        f"up {c['up_params'] / 1e6:.2f} M / down {c['down_params'] / 1e6:.2f} M",
        _size(c["up_bytes"]),
        _size(c["down_bytes"]),
        _size(c["up_bytes"] + c["down_bytes"]),
    )
    for label, part in (("per round", r), ("whole run", run)):
        sizes = (_size(part[k]) for k in ("up_bytes", "down_bytes", "total_bytes"))
        table.add_row(label, "", *sizes)
    for label, ft in report["full_ft"].items():
        table.add_row(
            f"full FT ({label}) per round",
            f"{ft['params'] / 1e9:.3f} B",
            "",
            "",
            _size(ft["per_round_bytes"]),
        )
    console.print(table)
    mem = report["memory"]
    parts = ", ".join(
        f"{k[:-3]} {v:.2f}" for k, v in mem.items() if k.endswith("_gb") and k != "peak_gb"
    )
    console.print(
        f"peak GPU memory estimate: {mem['peak_gb']:.2f} GB ({parts}; seq {mem['seq_len']})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: our flags, then Hydra overrides (``experiment=... model=...``)."""
    first_line = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m fedmllm.cost", description=first_line)
    parser.add_argument(
        "--wire-dtype",
        default=None,
        choices=sorted(WIRE_DTYPES),
        help="dtype of the travelling tensors (default: federation.wire_dtype, else float32)",
    )
    parser.add_argument("--clients", type=int, default=None, help="training clients")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args, overrides = parser.parse_known_args(argv)
    report = dry_run(overrides, args.wire_dtype, args.clients)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
