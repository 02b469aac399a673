"""Train-step speed and memory on a full-size real architecture, with random bf16 weights.

Builds LLaVA-1.5-7B (default; any shipped architecture with ``--arch``) from its shipped
``config.json`` straight on the GPU with random bf16 weights (no download: cost does not depend
on the weights), one random batch of ``--batch`` samples (the image tokens plus ``--text``
text tokens each), and times on it:

  lora        LoRA r=8 on q/k/v/up_proj of the language model (Fed-MoLE's LoRA baseline)
              through the method config (method=fedavg) and its local loop;
  lora_ckpt   the same with gradient checkpointing;
  mole        Fed-MoLE (method=mole): MoLE N=8, K=2 on up_proj, LoRA on q/k/v, ADA phases;
  mole_ckpt   the same with gradient checkpointing;
  peft        a plain Hugging Face + PEFT loop (LoraConfig on the same modules, AdamW, the
              same clipping and autocast) on the same model and batch;
  round       one simulated round of 5 clients on the shared engine (fedmllm's Simulator,
              FedAvg), against a round of 1 client: wall time and peak memory.

Prints one JSON object (and writes it to ``--out``): per variant the median step time, tokens/s,
the peak memory allocated during its timed steps and the estimate of
``fedmllm.models.memory_estimate`` for the same setting, plus Fed-MoLE's memory overhead over
LoRA (the paper reports +2.37 GB on LLaVA-1.5-7B, Table 5).

    python benchmarks/bench_real.py [--arch llava_1_5_7b] [--batch 4] [--steps 5] [--out r.json]
    python benchmarks/bench_real.py --quick   # CPU, a tiny LLaVA config: checks the script
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
import transformers
from hydra.utils import instantiate
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

from fedmllm.cost import compose_config
from fedmllm.federation import FederationConfig, Simulator
from fedmllm.federation.config import Client
from fedmllm.lora.layers import AdapterLayer
from fedmllm.models.arch import arch_config, build_model, image_tokens
from fedmllm.models.hf import set_checkpointing
from fedmllm.models.memory_estimate import decoder_dims, estimate_peak, training_shape

LORA = ["method=fedavg", "method.target_modules=[q_proj,k_proj,v_proj,up_proj]"]
MOLE = ["method=mole", "method.num_experts=8", "method.top_k=2"]


def tiny_llava() -> LlavaConfig:
    """A LLaVA small enough for a CPU check of the script (``--quick``)."""
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
    )  # fmt: skip
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=299)
    config.architectures = ["LlavaForConditionalGeneration"]
    return config


def make_batch(config: Any, batch: int, text: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random ids with the image tokens after the first text token; labels on the last half."""
    n_img = image_tokens(config)
    vocab = config.get_text_config().vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, min(vocab, 32000) - 1, (batch, n_img + text), generator=g)
    ids[:, 1 : 1 + n_img] = config.image_token_id
    labels = ids.clone()
    labels[:, : n_img + text // 2] = -100
    side = config.vision_config.image_size
    pixels = torch.randn(batch, 3, side, side, generator=g).to(dtype)
    mask = torch.ones_like(ids)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "pixel_values": pixels}


def strip_adapters(model: torch.nn.Module) -> None:
    """Put every adapter layer's frozen base layer back in its place."""
    for name, module in list(model.named_modules()):
        if isinstance(module, AdapterLayer):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.base_layer)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None


def measure(run: Callable[[int], None], warmup: int, steps: int, device: str) -> dict[str, Any]:
    """Median seconds per step over ``steps`` single-step calls after ``warmup`` steps."""
    run(warmup)
    _sync(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run(1)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "peak_gb": _peak_gb(device)}


def method_variant(
    overrides: list[str],
    engine: Any,
    fabric: Any,
    batch: dict,
    args: Any,
    device: str,
    ckpt: bool = False,
) -> dict[str, Any]:
    """Time a method config's own local loop on ``batch``; its adapters stay in the model."""
    cfg = compose_config(["model=hf", *overrides])
    method = instantiate(cfg.method, _partial_=True)(engine=engine)
    optimizer = method.configure_optimizers()

    def run(n: int) -> None:
        method.local_update(fabric, itertools.repeat(batch), n, optimizer, lambda _i: 1e-4)

    out = measure(run, args.warmup, args.steps, device)
    shape = training_shape(
        engine.model, engine.config, "language_model", args.tokens, args.dtype_bytes,
        gradient_checkpointing=ckpt, adapter_act_bytes=2 if device == "cuda" else 4,
    )  # fmt: skip
    out["estimate_gb"] = estimate_peak(decoder_dims(engine.config), shape)["peak_gb"]
    out["trainable_params"] = sum(p.numel() for p in method.parameters() if p.requires_grad)
    out["adapted_modules"] = list(getattr(method, "adapted_modules", []))
    return {**out, "method": method}


def peft_variant(
    model: Any, targets: list[str], batch: dict, args: Any, device: str
) -> dict[str, Any]:
    """A plain Hugging Face + PEFT training loop on the same modules, model and batch."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets)
    peft_model = get_peft_model(model, lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    on_device = {k: v.to(args.device) for k, v in batch.items()}
    peft_model.train()

    def run(n: int) -> None:
        for _ in range(n):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = peft_model(**on_device).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            loss.item()  # the same per-step sync as the methods' loss logging

    out = measure(run, args.warmup, args.steps, device)
    out["trainable_params"] = sum(p.numel() for p in params)
    peft_model.unload()
    return out


def round_variant(method: Any, engine: Any, fabric: Any, args: Any, clients: int) -> dict:
    """One round of ``clients`` clients on the shared engine (Simulator, FedAvg)."""
    cfg = compose_config(["model=hf", *LORA])
    fed = FederationConfig(
        rounds=1, local_steps=args.local_steps, batch_size=args.batch, drift=False,
        checkpoint=False, seed=0,
    )  # fmt: skip
    train = [Client(f"c{i}", "vqa", list(range(64)), []) for i in range(clients)]
    with tempfile.TemporaryDirectory() as run_dir:
        sim = Simulator(
            fabric, engine, method, instantiate(cfg.aggregator), train, fed, run_dir, []
        )
        _sync(args.device)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sim.run_round()
        _sync(args.device)
        wall = time.perf_counter() - t0
    return {"clients": clients, "wall_s": wall, "peak_gb": _peak_gb(args.device)}


def _clear(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_all(args: Any) -> dict[str, Any]:
    """Every variant on one model, in a fixed order; returns the JSON payload."""
    config = tiny_llava() if args.quick else arch_config(args.arch)
    dtype = torch.float32 if args.quick else torch.bfloat16
    t0 = time.perf_counter()
    model = build_model(config, dtype, args.device)
    build_s = time.perf_counter() - t0
    batch = make_batch(config, args.batch, args.text, dtype)
    args.tokens, args.dtype_bytes = batch["input_ids"].numel(), dtype.itemsize
    cpu_batch = dict(batch)
    engine = SimpleNamespace(
        model=model, config=config, collator=lambda _s: cpu_batch, gen_collator=None
    )
    precision = "bf16-mixed" if args.device == "cuda" else "32-true"
    fabric = L.Fabric(accelerator=args.device, devices=1, precision=precision)
    fabric.launch()
    out: dict[str, Any] = {}
    lora = method_variant(LORA, engine, fabric, batch, args, args.device)
    rounds = [round_variant(lora["method"], engine, fabric, args, k) for k in (args.clients, 1)]
    strip_adapters(model)
    _clear(args.device)
    set_checkpointing(model, True)
    out["lora_ckpt"] = method_variant(LORA, engine, fabric, batch, args, args.device, ckpt=True)
    set_checkpointing(model, False)
    strip_adapters(model)
    _clear(args.device)
    out["mole"] = method_variant(MOLE, engine, fabric, batch, args, args.device)
    strip_adapters(model)
    _clear(args.device)
    set_checkpointing(model, True)
    out["mole_ckpt"] = method_variant(MOLE, engine, fabric, batch, args, args.device, ckpt=True)
    set_checkpointing(model, False)
    strip_adapters(model)
    _clear(args.device)
    out["peft"] = peft_variant(model, lora["adapted_modules"], batch, args, args.device)
    out["lora"] = lora
    return _payload(args, out, rounds, build_s)


def _payload(args: Any, out: dict, rounds: list[dict], build_s: float) -> dict[str, Any]:
    variants = {}
    for name in ("lora", "lora_ckpt", "mole", "mole_ckpt", "peft"):
        v = {k: val for k, val in out[name].items() if k not in ("method", "adapted_modules")}
        v["tokens_per_s"] = args.tokens / v["step_s"]
        variants[name] = v
    many, one = rounds

    def overhead(a: str, b: str) -> float | None:
        peak_a, peak_b = variants[a]["peak_gb"], variants[b]["peak_gb"]
        return None if peak_a is None else peak_a - peak_b

    return {
        "setup": {
            "arch": "tiny_llava" if args.quick else args.arch,
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "dtype": "float32" if args.quick else "bfloat16",
            "batch": args.batch,
            "tokens_per_step": args.tokens,
            "timed_steps": args.steps,
            "local_steps_per_client": args.local_steps,
            "build_s": build_s,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "variants": variants,
        "mole_overhead_gb": overhead("mole", "lora"),
        "mole_overhead_ckpt_gb": overhead("mole_ckpt", "lora_ckpt"),
        "mole_step_ratio": variants["mole"]["step_s"] / variants["lora"]["step_s"],
        "lora_vs_peft_step_ratio": variants["lora"]["step_s"] / variants["peft"]["step_s"],
        "round": {"many": many, "one": one, "wall_ratio": many["wall_s"] / one["wall_s"]},
    }


def parse_args(argv: list[str] | None = None) -> Any:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="llava_1_5_7b", help="a shipped architecture")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--text", type=int, default=128, help="text tokens per sample")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--local-steps", type=int, default=3, help="local steps per client in the round")
    p.add_argument("--quick", action="store_true", help="CPU, tiny LLaVA config")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.text, args.warmup, args.steps, args.local_steps = 2, 16, 1, 2, 1
    args.device = "cuda" if torch.cuda.is_available() and not args.quick else "cpu"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run_all(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return result


if __name__ == "__main__":
    main()
