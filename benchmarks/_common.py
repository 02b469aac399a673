"""What the benchmark scripts share: the ``--quick`` switch, model configs, a random engine.

``--quick`` replaces a script's default sizes by tiny ones (a few seconds, the default model
``tiny_vlm`` instead of ``tiny_vlm_base``) and runs the same code, printing the same JSON keys
with ``"quick": true``: ``tests/test_benchmarks.py`` runs every script that way so a script
that stops importing or running is noticed. Its numbers measure nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

import fedmllm

ROOT = Path(__file__).resolve().parents[1]
# The lab's LoRA targets (LLaVA-1.5's q,k,v,up,down projections).
TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
QUICK_HELP = "tiny sizes: a few seconds, same code and JSON keys; numbers mean nothing"


def parse_args(ap: argparse.ArgumentParser, quick: dict[str, Any]) -> argparse.Namespace:
    """Parse the command line; with ``--quick`` the values in ``quick`` replace the defaults.

    Options given explicitly still win over the quick values.
    """
    ap.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = ap.parse_args()
    if args.quick:
        ap.set_defaults(**quick)
        args = ap.parse_args()
    return args


def model_config(name: str) -> dict[str, Any]:
    """``configs/model/<name>.yaml`` as a plain dict (inside the package or at the repo root)."""
    for configs in (Path(fedmllm.__file__).parent / "configs", ROOT / "configs"):
        path = configs / "model" / f"{name}.yaml"
        if path.is_file():
            return OmegaConf.to_container(OmegaConf.load(path))  # type: ignore[return-value]
    raise FileNotFoundError(f"no model config {name!r} under the package or {ROOT / 'configs'}")


def synth_benchmark(cache: Path, public_size: int, test_size: int = 100) -> Any:
    """A small ``fedmed_synth`` (8 train samples per client) generated into ``cache``."""
    # Imported here: the tensor-only scripts (ridge, drift) should not pay for the model stack.
    from fedmllm.data.synthmed import load_fedmed_synth

    return load_fedmed_synth(
        cache,
        seed=0,
        public_size=public_size,
        train_sizes={"vqa": 8, "report": 8, "detection": 8},
        test_size=test_size,
    )


def random_engine(model: str, public: list, cache: Path) -> Any:
    """The engine of model config ``model`` at random initialisation (cost needs no training)."""
    from fedmllm.data.synthmed import vocabulary
    from fedmllm.models import build_tiny_vlm

    return build_tiny_vlm(
        cache,
        public,
        vocabulary(),
        config=model_config(model)["config"],
        pretrain={"steps": 0},
        progress=False,
    )
