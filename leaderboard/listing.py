"""``hambench leaderboard list``: the board's tables in the terminal, at most 100 columns wide.

By default each dataset shows its headline columns (as the site does: the catalogue's headline metrics, the
primary metric, parameters); ``--all`` shows every column of the site, wrapped into several tables of at most
:data:`~hambench.scoring.CONSOLE_WIDTH` columns when they do not fit. Numbers use one format per column, the best
value of an accuracy column is bold with a ★, and wall times carry a † with a note.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from hambench.scoring._console import CONSOLE_WIDTH, TextColumn, fit_tables, make_console

from .board import Board, open_board
from .site import dataset_table

__all__ = ["board_tables", "print_board"]

_LOAD_NOTE = ("† wall time as the submitter measured it: depends on the hardware and its load; shown, never ranked")


def _header(c) -> str:
    arrow = {"lower": " ↓", "higher": " ↑"}.get(c.better, "") if c.ranked else ""
    unit = f"\n[{c.unit}]" if c.unit and c.unit != "1" else ""
    return f"{c.label}{arrow}{'†' if c.load_dependent else ''}{unit}"


def _value_column(c, t: dict) -> TextColumn:
    cells, plain = [], []
    many = len(t["rows"]) > 1
    for r in t["rows"]:
        text = r["_text"][c.key]
        v = r.get(c.key)
        if many and v is not None and t["best"].get(c.key) == v:
            cells.append(f"[bold green]{escape(text)} ★[/]")
            plain.append(text + " ★")
        else:
            cells.append(escape(text))
            plain.append(text)
    return TextColumn(_header(c), cells, plain=plain)


def board_tables(board=None, all_columns: bool = False, width: int = CONSOLE_WIDTH) -> list:
    """``rich`` tables of every dataset of the board (rows ranked by the dataset's primary metric), each at most
    ``width`` columns: the headline columns, or with ``all_columns`` every column the site shows (wrapped into
    several tables when needed)."""
    b = board if isinstance(board, Board) else open_board(board)
    subs = b.submissions()
    out = []
    for name in sorted(b.datasets):
        t = dataset_table(b, name, subs)
        shown = [c for c in t["columns"] if not c.hidden and c.source not in ("model", "links")
                 and (all_columns or c.headline)]
        n_more = sum(1 for c in t["columns"] if not c.hidden and c.source not in ("model", "links")
                     and not c.headline)
        keys = [TextColumn("#", [str(r["rank"]) for r in t["rows"]]),
                TextColumn("model", [escape(r["model"]) for r in t["rows"]], justify="left",
                           plain=[r["model"] for r in t["rows"]])]
        notes = []
        if not t["rows"]:
            notes.append("no submissions yet")
        if any(c.load_dependent for c in shown):
            notes.append(_LOAD_NOTE)
        if n_more and not all_columns and t["rows"]:
            notes.append(f"{n_more} more columns: hambench leaderboard list --all")
        title = f"{t['title']} ({name}, {t['kind']}) — ranked by {t['primary']}"
        out += fit_tables(title, keys, [_value_column(c, t) for c in shown], width,
                          caption=escape("\n".join(notes)) if notes else None)
    return out


def print_board(board=None, console: Console | None = None, all_columns: bool = False) -> None:
    """Print :func:`board_tables` (to ``console``, default one of at most 100 columns)."""
    console = console or make_console()
    tables = board_tables(board, all_columns=all_columns, width=min(console.width, CONSOLE_WIDTH))
    if not tables:
        console.print("the board has no datasets")
    for table in tables:
        console.print(table)
