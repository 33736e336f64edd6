"""``hambench leaderboard list``: the board's tables in the terminal (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hambench.scoring._catalogue import headline_keys

from .board import Board, open_board
from .site import dataset_table, format_value

__all__ = ["board_tables", "print_board"]

#: at most this many metric columns in the terminal (the site shows all), the catalogue's headline ones first
MAX_METRICS = 6


def board_tables(board=None) -> list:
    """One ``rich.table.Table`` per dataset of the board, rows ranked by the dataset's primary metric."""
    headline = headline_keys()
    b = board if isinstance(board, Board) else open_board(board)
    subs = b.submissions()
    out = []
    for name in sorted(b.datasets):
        t = dataset_table(b, name, subs)
        shown = [c for c in t["columns"] if c.source == "metrics" and not c.hidden]
        metric_cols = ([c for k in headline for c in shown if c.key == k]
                       + [c for c in shown if c.key not in headline])[:MAX_METRICS]
        cols = metric_cols + [c for c in t["columns"] if c.key in ("parameters", "inference_time_per_structure_s")]
        table = Table(title=escape(f"{t['title']} ({name}, {t['kind']}) — ranked by {t['primary']}"),
                      title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("model")
        for c in cols:
            arrow = {"lower": " ↓", "higher": " ↑"}.get(c.better, "")
            table.add_column(escape(f"{c.label}{arrow}" + (f"\n[{c.unit}]" if c.unit else "")), justify="right")
        for r in t["rows"]:
            cells = []
            for c in cols:
                v = r.get(c.key)
                text = format_value(v, c.key)
                best = v is not None and t["best"].get(c.key) == v and len(t["rows"]) > 1
                cells.append(f"[bold green]{text}[/]" if best else text)
            table.add_row(str(r["rank"]), escape(r["model"]), *cells)
        if not t["rows"]:
            table.caption = "no submissions yet"
        out.append(table)
    return out


def print_board(board=None, console=None) -> None:
    """Print :func:`board_tables` (to ``console``, default a new ``rich.console.Console``)."""
    console = console or Console(width=None if Console().is_terminal else 160)
    tables = board_tables(board)
    if not tables:
        console.print("the board has no datasets")
    for table in tables:
        console.print(table)
