"""Rich console rendering of a :class:`~fedmllm.report.cells.TableSpec`."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from fedmllm.report.cells import TableSpec


def rich_table(spec: TableSpec) -> Table:
    """The spec as a rich ``Table``: group rows dimmed italics, best cells bold, notes below."""
    # Text, not markup: labels such as "FedAvg [method.r=4]" contain brackets.
    caption = Text("\n".join(spec.notes))
    table = Table(title=spec.title, caption=caption, caption_justify="left")
    for i, h in enumerate(spec.header):
        table.add_column(h, justify="right" if i >= spec.numeric_from else "left")
    for section in spec.sections:
        table.add_row(Text(section.title, style="italic dim"))
        for row in section.rows:
            table.add_row(*(Text(c.text, style="bold" if c.bold else "") for c in row))
        table.add_section()
    return table
