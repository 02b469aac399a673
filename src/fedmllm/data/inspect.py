"""Look at what each hospital holds: ``python -m fedmllm.data.inspect benchmark=<name> [...]``.

Prints per-client statistics (samples per split, task, modality, closed/open ratio, top
answers, answer-distribution divergence between clients) and writes a PNG grid with a few
example images per client, each with its question and answer. Arguments are Hydra overrides
of the packaged ``train.yaml`` (:mod:`fedmllm.configs`: ``benchmark=fedvqa_synth
benchmark.public_size=100 ...``) plus
``inspect.out=<png path>`` (default ``<paths.log_dir>/inspect/<time>/inspect_<benchmark>.png``,
i.e. ``logs/inspect/<time>/`` under the working directory) and ``inspect.examples=<n>``.
A bad setting or a missing dataset ends in one line (exit 2), as in ``train.py``.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

from fedmllm.data.stats import client_stats, mean_divergence

CELL = 128  # pixels of one example image in the grid
TEXT_LINES = 5
LINE = 11


def stats_table(bench: Any) -> Table:
    """A rich table with one row per client (and one for the public split)."""
    table = Table(title=f"{bench.name}: {len(bench.clients)} clients, {len(bench.public)} public")
    for col in ("client", "task", "modality", "train", "test", "closed", "top answers", "JS"):
        table.add_column(col)
    divergence = mean_divergence(bench.clients)
    for c in bench.clients:
        s = client_stats(c)
        closed = f"{100 * s['closed_share']:.0f}%" if s["closed_share"] is not None else "-"
        top = ", ".join(f"{a} {100 * p:.0f}%" for a, p in s["top_answers"][:3]) or "-"
        mods = "/".join(s["modalities"]) if len(s["modalities"]) > 1 else s["modality"]
        js = f"{divergence[c.client_id]:.2f}" if c.client_id in divergence else "-"
        table.add_row(c.client_id, c.task, mods, str(s["train"]), str(s["test"]), closed, top, js)
    if bench.public:
        mods = sorted({s.modality for s in bench.public})
        tasks = sorted({s.task for s in bench.public})
        table.add_row("(public)", "/".join(tasks), "/".join(mods), str(len(bench.public)), "-")
    table.caption = "JS: mean Jensen-Shannon divergence (bits) of a client's train answers to the "
    table.caption += "other clients of its task (report clients: answer words)"
    return table


def _error_cell(err: Exception) -> Image.Image:
    cell = Image.new("RGB", (CELL, CELL), (120, 0, 0))
    ImageDraw.Draw(cell).text((4, 4), str(err)[:40], fill=(255, 255, 255))
    return cell


def _thumbnail(sample: Any) -> Image.Image:
    """The image; a sample with sound shows its spectrogram (the whole cell without an
    image, the bottom quarter under one)."""
    from fedmllm.data.audio import spectrogram_image
    from fedmllm.data.collate import load_image

    audio = getattr(sample, "audio", None)
    if sample.image is None:
        cell = Image.new("RGB", (CELL, CELL), (60, 60, 60))
    else:
        try:
            cell = load_image(sample.image).resize((CELL, CELL), Image.Resampling.NEAREST)
        except (OSError, ValueError) as err:  # show the problem in the grid, do not stop
            return _error_cell(err)
    if audio is None:
        return cell
    try:
        strip = CELL if sample.image is None else CELL // 4
        cell.paste(spectrogram_image(audio, CELL, strip), (0, CELL - strip))
    except (OSError, ValueError) as err:
        return _error_cell(err)
    return cell


def example_grid(bench: Any, per_client: int = 4) -> Image.Image:
    """Rows of clients, ``per_client`` examples each, with question and answer under each."""
    font = ImageFont.load_default()
    label_w, cell_h = 90, CELL + TEXT_LINES * LINE + 6
    rows = len(bench.clients)
    grid = Image.new("RGB", (label_w + per_client * (CELL + 6), rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, c in enumerate(bench.clients):
        y0 = r * cell_h
        draw.text((4, y0 + 4), f"{c.client_id}\n{c.task}\n{c.modality}", fill=(0, 0, 0), font=font)
        for k, s in enumerate(c.train[:per_client]):
            x0 = label_w + k * (CELL + 6)
            grid.paste(_thumbnail(s), (x0, y0))
            text = textwrap.wrap(f"Q: {s.question}", 22)[: TEXT_LINES - 2]
            text += textwrap.wrap(f"A: {s.answer}", 22)[:2]
            for j, line in enumerate(text):
                draw.text((x0, y0 + CELL + 2 + j * LINE), line, fill=(0, 0, 0), font=font)
    return grid


def load_benchmark(overrides: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """Compose ``train.yaml`` with ``overrides`` and instantiate its benchmark.

    ``inspect.*`` overrides are taken out and returned as options; ``out`` defaults to a
    fresh ``<paths.log_dir>/inspect/<time>/inspect_<benchmark>.png``.
    """
    from hydra.utils import instantiate

    from fedmllm.configs import compose_train

    options = {"out": None, "examples": 4}
    rest = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("inspect."):
            options[key.split(".", 1)[1]] = value
        else:
            rest.append(item)
    cfg = compose_train(rest)  # paths.root_dir: the working directory, unless overridden
    bench = instantiate(cfg.benchmark)
    if not options["out"]:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        folder = Path(cfg.paths.log_dir) / "inspect" / stamp
        options["out"] = str(folder / f"inspect_{bench.name}.png")
    return bench, options


def main(argv: Sequence[str] | None = None) -> int:
    """Print the statistics and write the grid; returns a process exit code."""
    from hydra.errors import CompactHydraException

    from fedmllm.cli_errors import error_line

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        bench, options = load_benchmark(args)
    except (CompactHydraException, ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {error_line(e, args)}", file=sys.stderr)
        return 2
    console = Console(width=140)
    console.print(stats_table(bench))
    if getattr(bench, "validation", None):
        v = bench.validation
        console.print(
            f"validation: {v.get('checked', 0)} records checked, {v.get('skipped', 0)} skipped"
        )
    out = Path(options["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    example_grid(bench, int(options["examples"])).save(out)
    console.print(f"example grid written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
