"""What the Flower tests share: smoke-size run configs, and a fresh node-runtime cache per test
(as a new ClientApp process would start)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from fedmllm.deploy.flower import node as node_module


def smoke_overrides(
    experiment: str, cache_dir: Path, out: Path, *extra: str, output_dir: Path | None = None
) -> list[str]:
    """Hydra overrides of ``experiment`` at smoke size: logs under ``out/logs``, the run in
    ``output_dir`` (default ``out/flower``)."""
    return [
        f"experiment={experiment}",
        "debug=smoke",
        *extra,
        f"paths.data_dir={cache_dir}",
        f"paths.log_dir={out / 'logs'}",
        f"paths.output_dir={output_dir or out / 'flower'}",
    ]


def flower_run_config(
    cache_dir: Path,
    out: Path,
    experiment: str,
    *extra: str,
    output_dir: Path | None = None,
    **options,
) -> dict:
    """A Flower run config (``overrides`` + deployment ``options``) of :func:`smoke_overrides`."""
    overrides = smoke_overrides(experiment, cache_dir, out, *extra, output_dir=output_dir)
    return {"overrides": shlex.join(overrides), **options}


@pytest.fixture(autouse=True)
def fresh_runtimes():
    """No node runtime cached from another test, before or after this one."""
    node_module.drop_runtimes()
    yield
    node_module.drop_runtimes()
