"""Terminal tables that fit: at most :data:`CONSOLE_WIDTH` columns, numbers never cut.

A table is given as *key* columns (repeated in every part: the row's name) and *value* columns; when all of them do
not fit the width, the value columns are wrapped into several tables of consecutive columns, each with the key
columns first, titled "(columns a–b of n)". Headers may wrap at spaces; cells never wrap and are never shortened
(a column is at least as wide as its longest cell), so ``9.202e+…`` cannot happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["CONSOLE_WIDTH", "TextColumn", "console_width", "make_console", "fit_tables"]

#: the widest terminal table hambench prints (characters)
CONSOLE_WIDTH = 100
_BOX = box.HEAVY_HEAD  # rich's default: one border character per column plus one, padding 1 each side


@dataclass
class TextColumn:
    """One column: its header (plain text; '\\n' starts a new header line), its cells (rich markup allowed: pass
    ``styled`` as well with the plain text's length in mind) and its alignment."""

    header: str
    cells: list[str]
    justify: str = "right"
    plain: list[str] = field(default_factory=list)  # the cells' text without markup (for widths); default = cells

    def width(self) -> int:
        """Its narrowest width: the longest cell, or the longest word of the header."""
        texts = self.plain or self.cells
        words = [w for line in self.header.split("\n") for w in line.split()]
        return max([len(t) for t in texts] + [len(w) for w in words] + [1])

    def natural_width(self) -> int:
        """Its width with every header line unwrapped."""
        texts = self.plain or self.cells
        return max([len(t) for t in texts] + [len(line) for line in self.header.split("\n")] + [1])


def console_width() -> int:
    """The width tables are fitted to: :data:`CONSOLE_WIDTH`, or the terminal's when it is narrower."""
    probe = Console()
    return min(CONSOLE_WIDTH, probe.width) if probe.is_terminal else CONSOLE_WIDTH


def make_console(**kw) -> Console:
    """A ``rich`` console of :func:`console_width` columns (``kw`` passed on, e.g. ``record=True``)."""
    return Console(width=console_width(), **kw)


def _table_width(widths: list[int]) -> int:
    return 1 + sum(w + 3 for w in widths)


def _widths(columns: list[TextColumn], width: int) -> list[int]:
    """Each column's width: the narrowest, widened towards the natural one (left first) while the table fits."""
    out = [c.width() for c in columns]
    for i, c in enumerate(columns):
        room = width - _table_width(out)
        if room <= 0:
            break
        out[i] += min(room, c.natural_width() - out[i])
    return out


def _table(title: str, columns: list[TextColumn], caption: str | None, width: int) -> Table:
    t = Table(title=escape(title), title_justify="left", box=_BOX, caption=caption, caption_justify="left")
    for c, w in zip(columns, _widths(columns, width)):
        t.add_column(escape(c.header), justify=c.justify, width=w, no_wrap=False, overflow="fold")
    n = len(columns[0].cells) if columns else 0
    for i in range(n):
        t.add_row(*[c.cells[i] for c in columns])
    return t


def fit_tables(title: str, keys: list[TextColumn], values: list[TextColumn], width: int = CONSOLE_WIDTH,
               caption: str | None = None) -> list[Table]:
    """``rich`` tables of ``keys`` + ``values`` no wider than ``width``: one table when everything fits, else the
    value columns wrapped into consecutive parts (each with the key columns). ``caption`` goes under the last."""
    parts: list[list[TextColumn]] = []
    current: list[TextColumn] = []
    for c in values:
        if current and _table_width([x.width() for x in keys + current + [c]]) > width:
            parts.append(current)
            current = []
        current.append(c)
    parts.append(current)
    out = []
    a = 1
    for k, part in enumerate(parts):
        label = title if len(parts) == 1 else f"{title} (columns {a}–{a + len(part) - 1} of {len(values)})"
        out.append(_table(label, keys + part, caption if k == len(parts) - 1 else None, width))
        a += len(part)
    return out
