"""``hambench leaderboard build``: the board as a static site that works offline.

::

    SITE/
      index.html                        # one sortable table per dataset, best value per column marked
      assets/leaderboard.css, sort.js   # written by hambench; no CDN, no fonts, no network
      <dataset>/table.json, table.csv   # the data behind each table
      <dataset>/<model>/index.html      # metadata, every metric, subsets, worst structures/blocks, plots
      <dataset>/<model>/*.png, scores.json, meta.yml

Every page uses relative links only, so the folder can be opened from disk or served by any static server.
The site is written to ``SITE.partial/`` and renamed into place (an existing site is replaced whole).
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import uuid
from pathlib import Path

import jinja2

from hambench import __version__
from hambench.atomic import replace_dir
from hambench.errors import InputError

from .board import Board, open_board
from .columns import best_keys, rank_rows, row_values, table_columns

__all__ = ["build_site", "dataset_table", "format_value"]

_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"


def format_value(v, key: str = "") -> str:
    """A table cell's text: 4 significant digits, integers with thin separators, '—' when missing.

    >>> format_value(0.000123456), format_value(1234567, "parameters"), format_value(None)
    ('0.0001235', '1,234,567', '—')
    """
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if key == "parameters":
        return f"{int(v):,}"
    if v == 0:
        return "0"
    return f"{v:.4g}" if 1e-4 <= abs(v) < 1e6 else f"{v:.3e}"


def dataset_table(board: Board, dataset: str, submissions) -> dict:
    """The data of one dataset's table: columns, ranked rows (values + notes), best values."""
    subs = [s for s in submissions if s.dataset == dataset]
    ds = board.datasets[dataset]
    cols = table_columns(subs)
    rows = []
    for s in subs:
        vals, notes = row_values(s, cols)
        vals["_notes"] = notes
        vals["_display"] = s.display_name
        rows.append(vals)
    primary = ds.primary if any(c.key == ds.primary for c in cols) else (cols[1].key if len(cols) > 1 else "model")
    rows = rank_rows(rows, primary, cols)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return {"dataset": dataset, "title": ds.title, "kind": ds.kind, "primary": primary, "columns": cols,
            "rows": rows, "best": best_keys(rows, cols)}


def _table_json(t: dict) -> dict:
    keys = [c.key for c in t["columns"]]
    return {
        "dataset": t["dataset"], "kind": t["kind"], "primary": t["primary"], "hambench_version": __version__,
        "columns": [{"key": "rank", "label": "#", "unit": "", "better": ""}] + [c.to_dict() for c in t["columns"]],
        "rows": [{"rank": r["rank"], **{k: r.get(k) for k in keys}, "notes": r["_notes"]} for r in t["rows"]],
    }


def _table_csv(t: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = t["columns"]
    w.writerow(["rank"] + [f"{c.key} [{c.unit}]" if c.unit else c.key for c in cols])
    for r in t["rows"]:
        w.writerow([r["rank"]] + ["" if r.get(c.key) is None else repr(r[c.key]) if isinstance(r[c.key], float)
                                  else r[c.key] for c in cols])
    return buf.getvalue()


def _env():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = format_value
    return env


def _safe_url(u) -> str | None:
    """Only http(s) links reach a page (the schema already requires it; this guards hand-edited boards)."""
    return u if isinstance(u, str) and u.startswith(("http://", "https://")) else None


def build_site(board=None, output=None) -> str:
    """Write the static site of ``board`` to ``output``; return a one-line summary.

    Parameters
    ----------
    board : path or :class:`Board`, optional
        The board folder (default: the repository's ``leaderboard/``).
    output : path
        The site folder; replaced whole (written to ``output.partial`` first).
    """
    if output is None:
        raise InputError(None, "leaderboard build needs -o/--output SITE_DIR")
    b = board if isinstance(board, Board) else open_board(board)
    output = Path(output)
    subs = b.submissions()
    env = _env()
    tmp = output.with_name(f"{output.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        (tmp / "assets").mkdir()
        for name in ("leaderboard.css", "sort.js"):
            shutil.copyfile(STATIC / name, tmp / "assets" / name)
        tables = []
        for name in sorted(b.datasets):
            t = dataset_table(b, name, subs)
            t["description"] = b.datasets[name].description
            t["split"] = b.datasets[name].split
            tables.append(t)
            ddir = tmp / name
            ddir.mkdir()
            (ddir / "table.json").write_text(json.dumps(_table_json(t), indent=1, allow_nan=False) + "\n",
                                             encoding="utf-8")
            (ddir / "table.csv").write_text(_table_csv(t), encoding="utf-8")
        page = env.get_template("index.html.j2").render(
            title=b.title, tables=tables, version=__version__, n_submissions=len(subs))
        (tmp / "index.html").write_text(page, encoding="utf-8")
        model_tpl = env.get_template("model.html.j2")
        for s in subs:
            mdir = tmp / s.dataset / s.model
            mdir.mkdir(parents=True)
            images = []
            for p in s.plots:
                shutil.copyfile(p, mdir / p.name)
                images.append({"file": p.name, "caption": p.stem.replace("_", " ")})
            shutil.copyfile(s.path / "scores.json", mdir / "scores.json")
            shutil.copyfile(s.path / "meta.yml", mdir / "meta.yml")
            t = next(t for t in tables if t["dataset"] == s.dataset)
            row = next(r for r in t["rows"] if r["model"] == s.model)
            per_s = sorted((p for p in s.scores.get("per_structure", []) or [] if "H_mae" in p),
                           key=lambda p: -float(p["H_mae"]))
            per_b = sorted((p for p in s.scores.get("per_block", []) or [] if "mae" in p),
                           key=lambda p: -float(p["mae"]))
            m = s.meta
            (mdir / "index.html").write_text(model_tpl.render(
                s=s, m=m, row=row, table=t, rank=row["rank"], n_rows=len(t["rows"]), images=images,
                links=[(k, _safe_url(m.get(k))) for k in ("paper", "code", "checkpoint") if _safe_url(m.get(k))],
                metrics=sorted(((k, v) for k, v in s.scores.get("metrics", {}).items()), key=lambda kv: kv[0]),
                units=s.scores.get("units", {}) or {}, subsets=s.scores.get("subsets", {}) or {},
                worst_structures=per_s[:10], worst_blocks=per_b[:10], n_structures=s.scores.get("n_structures"),
                split=s.scores.get("split"), version=__version__,
                hyper=sorted((m.get("hyperparameters") or {}).items()),
                scores_json=json.dumps({k: s.scores.get(k) for k in ("truth", "predictions", "model")}, indent=1,
                                       default=str),
            ), encoding="utf-8")
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_img = sum(len(s.plots) for s in subs)
    return (f"leaderboard: {len(subs)} submission(s) on {len(b.datasets)} dataset(s), {n_img} plots → "
            f"{output / 'index.html'}")
