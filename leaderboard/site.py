"""``hambench leaderboard build``: the board as a static site that works offline.

::

    SITE/
      index.html                        # per dataset a headline table (the rest one click away), sortable,
                                        # the best value of each accuracy column marked
      assets/leaderboard.css, sort.js   # written by hambench; no CDN, no fonts, no network
      <dataset>/table.json, table.csv   # the data behind each table
      <dataset>/<model>/index.html      # metadata, every metric grouped by topic with its definition, subsets,
                                        # worst structures/blocks, plots
      <dataset>/<model>/*.png, scores.json, meta.yml

Every page uses relative links only, so the folder can be opened from disk or served by any static server.
The site is written to a hidden ``.SITE.partial-*/`` and swapped into place (an existing site is replaced whole).

Before anything is written, every submission is checked against its record (:mod:`.record`) and, where
``predictions`` folders hold its recorded predictions, scored again (:mod:`.verify`); one that does not match
stops the build with one line. ``-o`` must be a new or empty folder, or a site this command built before (it
holds :data:`SITE_MARK`); anything else is replaced only with ``overwrite``, and never the board itself, a truth
store or a predictions folder the build reads (nor a folder holding one).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import uuid
from pathlib import Path

import jinja2

from hambench import __version__
from hambench.atomic import replace_dir
from hambench.errors import InputError

from hambench.scoring._format import column_format

from .board import Board, open_board
from .columns import Column, safe_url, best_keys, rank_rows, row_values, table_columns
from .pages import metric_sections, subset_rows
from .record import RECORD
from .verify import rederive

__all__ = ["build_site", "dataset_table", "format_value", "cell_texts", "SITE_MARK", "check_output"]

#: the file that marks a folder as a site ``leaderboard build`` wrote (a later build may replace it)
SITE_MARK = ".hambench-site.json"

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


def cell_texts(rows: list[dict], columns: list[Column]) -> list[dict]:
    """Each row's cell texts ``{key: text}``: every numeric column in its one format (:func:`column_format`)."""
    out: list[dict] = [{} for _ in rows]
    for c in columns:
        if c.source in ("model", "links"):
            continue
        f = column_format([r.get(c.key) for r in rows], integer=c.integer)
        for texts, r in zip(out, rows):
            texts[c.key] = f(r.get(c.key))
    return out


def dataset_table(board: Board, dataset: str, submissions) -> dict:
    """The data of one dataset's table: columns, ranked rows (values, notes, cell texts), best values."""
    subs = [s for s in submissions if s.dataset == dataset]
    ds = board.datasets[dataset]
    cols = table_columns(subs, ds.primary)
    rows = []
    for s in subs:
        vals, notes = row_values(s, cols)
        vals["_notes"] = notes
        vals["_display"] = s.display_name
        rows.append(vals)
    metric_cols = [c for c in cols if c.source in ("metrics", "worst")]
    primary = ds.primary if any(c.key == ds.primary for c in cols) else (metric_cols[0].key if metric_cols
                                                                           else "model")
    rows = rank_rows(rows, primary, cols)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    for r, texts in zip(rows, cell_texts(rows, cols)):
        r["_text"] = texts
    return {"dataset": dataset, "title": ds.title, "kind": ds.kind, "primary": primary, "columns": cols,
            "rows": rows, "best": best_keys(rows, cols)}


def _data_columns(t: dict) -> list[Column]:
    """The columns of table.json / table.csv: every number (links stay on the pages)."""
    return [c for c in t["columns"] if c.source != "links"]


def _table_json(t: dict) -> dict:
    cols = _data_columns(t)
    keys = [c.key for c in cols]
    return {
        "dataset": t["dataset"], "kind": t["kind"], "primary": t["primary"], "hambench_version": __version__,
        "columns": [{"key": "rank", "label": "#", "unit": "", "better": ""}] + [c.to_dict() for c in cols],
        "rows": [{"rank": r["rank"], **{k: r.get(k) for k in keys}, "notes": r["_notes"]} for r in t["rows"]],
    }


def _table_csv(t: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = _data_columns(t)
    w.writerow(["rank"] + [f"{c.key} [{c.unit}]" if c.unit else c.key for c in cols])
    for r in t["rows"]:
        w.writerow([r["rank"]] + ["" if r.get(c.key) is None else repr(r[c.key]) if isinstance(r[c.key], float)
                                  else r[c.key] for c in cols])
    return buf.getvalue()


def group_runs(columns: list[Column]) -> list[dict]:
    """Consecutive columns of one group: ``[{"group", "title", "columns"}]`` (the table's group header row)."""
    runs: list[dict] = []
    for c in columns:
        if runs and runs[-1]["group"] == c.group:
            runs[-1]["columns"].append(c)
        else:
            runs.append({"group": c.group, "title": c.group_title, "columns": [c]})
    return runs


def _env():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = format_value
    env.filters["group_runs"] = group_runs
    return env


def _plot_caption(name: str) -> str:
    """A plot file's caption (``block_mae`` → ``MAE per basic block``)."""
    return _PLOT_CAPTIONS.get(name, name.replace("_", " "))


_PLOT_CAPTIONS = {"block_mae": "MAE per basic block", "orbital_mae": "MAE per orbital pair", "parity": "parity",
                  "error_vs_size": "H MAE per structure against its size", "scf": "SCF acceleration",
                  "bands": "bands of the worst structure", "pair_mae": "MAE per element pair"}


def _write_model_page(tpl, s, t: dict, mdir: Path) -> None:
    """One submission's folder: its page, plots, scores.json and meta.yml."""
    mdir.mkdir(parents=True)
    images = []
    for p in s.plots:
        shutil.copyfile(p, mdir / p.name)
        images.append({"file": p.name, "caption": _plot_caption(p.stem)})
    for name in ("scores.json", "meta.yml", RECORD):
        shutil.copyfile(s.path / name, mdir / name)
    row = next(r for r in t["rows"] if r["model"] == s.model)
    per_s = sorted((p for p in s.scores.get("per_structure", []) or [] if "H_mae" in p),
                   key=lambda p: -float(p["H_mae"]))
    per_b = sorted((p for p in s.scores.get("per_block", []) or [] if "mae" in p), key=lambda p: -float(p["mae"]))
    per_s, per_b = per_s[:10], per_b[:10]
    for rows, key in ((per_s, "H_mae"), (per_b, "mae")):  # one number format per column of the worst tables
        texts = column_format([p[key] for p in rows])
        rows[:] = [{**p, "_text": texts(p[key])} for p in rows]
    m = s.meta
    (mdir / "index.html").write_text(tpl.render(
        s=s, m=m, row=row, table=t, rank=row["rank"], n_rows=len(t["rows"]), images=images,
        links=[(k, safe_url(m.get(k))) for k in ("paper", "code", "checkpoint") if safe_url(m.get(k))],
        sections=metric_sections(s.scores),
        subsets={k: subset_rows(v) for k, v in sorted((s.scores.get("subsets") or {}).items())},
        worst_structures=per_s, worst_blocks=per_b, n_structures=s.scores.get("n_structures"),
        split=s.scores.get("split"), version=__version__, hyper=sorted((m.get("hyperparameters") or {}).items()),
        scores_json=json.dumps({k: s.scores.get(k) for k in ("truth", "predictions", "model")}, indent=1,
                               default=str),
    ), encoding="utf-8")


def _write_site(b: Board, subs, tmp: Path) -> None:
    env = _env()
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
    page = env.get_template("index.html.j2").render(title=b.title, tables=tables, version=__version__,
                                                    n_submissions=len(subs))
    (tmp / "index.html").write_text(page, encoding="utf-8")
    model_tpl = env.get_template("model.html.j2")
    for s in subs:
        t = next(t for t in tables if t["dataset"] == s.dataset)
        _write_model_page(model_tpl, s, t, tmp / s.dataset / s.model)
    (tmp / SITE_MARK).write_text(json.dumps({"built_by": "hambench leaderboard build", "hambench_version":
                                             __version__, "board": str(b.path.resolve())}) + "\n", encoding="utf-8")


def _lexical(p: Path) -> Path:
    """``p`` absolute, its folder's links resolved but not ``p`` itself (replacing a link replaces the link)."""
    p = Path(os.path.abspath(p))
    return p.parent.resolve() / p.name


def check_output(output: Path, overwrite: bool, protected=(), inside=()) -> None:
    """Refuse an ``-o`` the build may not replace (see the module docstring); nothing is written.

    ``protected``: paths the output may neither be nor contain; ``inside``: folders it may not lie in.
    """
    out = _lexical(output)
    for p in protected:
        rp = Path(p).resolve()
        if out == rp or rp.is_relative_to(out):
            raise InputError(output, f"-o would replace {p} (the board, a truth store or predictions the build "
                                     "reads); choose another folder")
    for p in inside:
        if out.is_relative_to(Path(p).resolve()):
            raise InputError(output, f"-o lies inside {p}, where every folder is read as a submission; choose "
                                     "another folder")
    if overwrite or not (output.exists() or output.is_symlink()):
        return
    if output.is_symlink() or not output.is_dir():
        raise InputError(output, "exists and is not a folder; pass --overwrite to replace it with the site")
    mark = output / SITE_MARK
    if any(output.iterdir()) and not (mark.is_file() and not mark.is_symlink()):
        raise InputError(output, f"is a folder that is neither empty nor a site `hambench leaderboard build` made "
                                 f"(no {SITE_MARK}); choose another -o or pass --overwrite to replace it")


def _verify(b: Board, subs, predictions, strict: bool, scorer) -> int:
    """Score again every submission whose recorded predictions are in ``predictions``; how many were."""
    n = 0
    for s in subs:
        found = rederive(b, s, predictions, scorer=scorer)
        if found is None and strict:
            where = ", ".join(str(d) for d in predictions) or "no --predictions folder"
            raise InputError(s.path / RECORD, f"--strict: the recorded predictions {s.record['predictions']['name']}"
                                              f" are not in {where}, so its scores cannot be derived again")
        n += found is not None
    return n


def build_site(board=None, output=None, *, overwrite: bool = False, predictions=(), strict: bool = False,
               scorer=None) -> str:
    """Write the static site of ``board`` to ``output``; return a one-line summary.

    Parameters
    ----------
    board : path or :class:`Board`, optional
        The board folder (default: the repository's ``leaderboard/``).
    output : path
        The site folder: new, empty, or a site built before; anything else only with ``overwrite``.
    overwrite : replace whatever ``output`` is (never the board, a truth store or a predictions folder)
    predictions : folders holding prediction stores by the names their records give: those found are scored
        again and must give the recorded scores (:func:`~hambench.leaderboard.verify.rederive`)
    strict : refuse a submission whose recorded predictions are not found
    scorer : as :func:`~hambench.leaderboard.submit.submit`'s (tests)
    """
    if output is None:
        raise InputError(None, "leaderboard build needs -o/--output SITE_DIR")
    b = board if isinstance(board, Board) else open_board(board)
    output = Path(output)
    predictions = [Path(d) for d in predictions]
    for d in predictions:
        if not d.is_dir():
            raise InputError(d, "no such folder (--predictions)")
    stores = [ds.store for ds in b.datasets.values() if ds.store is not None]
    check_output(output, overwrite, protected=[b.path, *stores, *predictions], inside=[b.submissions_dir])
    subs = b.submissions()
    n_derived = _verify(b, subs, predictions, strict, scorer)
    tmp = output.with_name(f".{output.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        _write_site(b, subs, tmp)
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_img = sum(len(s.plots) for s in subs)
    return (f"leaderboard: {len(subs)} submission(s) on {len(b.datasets)} dataset(s), {n_img} plots; every record "
            f"checked, {n_derived} re-derived from predictions → {output / 'index.html'}")
