"""``hambench leaderboard init``: a new board, or a new dataset on a board, and a ``meta.yml`` template to fill in.

A board is a folder with ``datasets.yml`` (:mod:`.schema`) and ``submissions/``. ``init`` adds one dataset entry
computed from the truth store itself — its kind, its content checksum, the store's path relative to the board, the
test split and the scoring options — so nothing in it is typed by hand, and writes
``templates/<dataset>.meta.yml``: every field of the submission schema with a comment, the dataset filled in and
``<…>`` placeholders for what only the submitter knows (``submit`` refuses a placeholder left in, naming it).
"""

from __future__ import annotations

import os
from pathlib import Path

from hambench.atomic import write_text
from hambench.errors import InputError
from hambench.store import open_store, require_truth, select_split, store_checksum

from .board import check_name
from .schema import dump_yaml, load_yaml_strict, validate_datasets

__all__ = ["init_board", "meta_template"]

META_TEMPLATE = """\
# A leaderboard submission for dataset {dataset!r} of the board {board}.
# Fill in every <...> (submit refuses the file while one is left), then:
#   hambench leaderboard submit PREDS.zarr --meta THIS_FILE --board {board}
# Schema: hambench/leaderboard/meta.schema.json (unknown keys are refused). Scores are never typed here: submit
# recomputes them from the predictions; `metrics:` (optional) are numbers you saw, checked against them.
meta_version: 1
model: "<model-key>"              # the submission folder: letters, digits, . _ + -
dataset: {dataset}
display_name: "<Model name as shown on the site>"
architecture: "<hambench model-zoo name (qhnet, deephe3, ...) or your own>"
authors: ["<Your Name>"]
paper: null                     # or https://... of the paper
code: "<https://... of the code>"
license: "<MIT>"
date: "<YYYY-MM-DD>"
hyperparameters: {{}}             # free-form scalars, e.g. {{preset: tiny, train.lr: 0.001}}
training:
  store_checksum: "<sha256 of the training store: hambench info TRAIN.zarr --checksum>"
  seeds: [0]
  hardware: "<e.g. 2 CPU cores>"
  time_s: "<training wall time in seconds>"
parameters: "<number of trained parameters>"
inference:
  time_per_structure_s: "<seconds per structure>"
  hardware: "<e.g. 2 CPU cores>"
inputs: [geometry]
"""


def meta_template(board: Path, dataset: str) -> str:
    """The ``meta.yml`` template of ``dataset`` on ``board`` (text with comments)."""
    return META_TEMPLATE.format(dataset=dataset, board=board)


def _entry(board: Path, truth: Path, split: str | None, scf: int | None, title: str | None, dataset: str) -> dict:
    st = require_truth(open_store(truth), "a truth store (--truth)")
    kind = st.kind
    if split is not None:
        n = len(select_split(st, split))
        if n == 0:
            raise InputError(truth, f"--split {split}: no structure of the store is in it")
    entry = {
        "title": title or f"{dataset} ({len(st)} structures{', ' + split if split else ''})",
        "description": f"Truth store {truth.name} ({kind}s); made with `hambench leaderboard init`.",
        "kind": kind,
        "truth_checksum": store_checksum(truth),
        "store": os.path.relpath(truth.resolve(), board.resolve()),
        "primary": "H_mae",
    }
    if split is not None:
        entry["split"] = split
    if scf:
        if kind != "molecule":
            raise InputError(None, f"--scf {scf}: SCF acceleration is scored for molecules; {truth} holds crystals")
        entry["score"] = {"scf": int(scf)}
    return entry


def init_board(board, dataset: str, truth, split: str | None = None, scf: int | None = None,
               title: str | None = None) -> str:
    """Create ``board`` (or add ``dataset`` to it) for the truth store ``truth``; write the meta template.

    Refuses (one :class:`~hambench.errors.InputError`, nothing written) a bad dataset name, a truth path that is
    not a store, a split the store does not have, and a dataset the board already has for another store or
    split. Returns the summary line.
    """
    board, truth = Path(board), Path(truth)
    check_name(dataset, "dataset", "--dataset")
    if board.exists() and not board.is_dir():
        raise InputError(board, "--board is a file, not a folder")
    entry = _entry(board, truth, split, scf, title, dataset)
    path = board / "datasets.yml"
    doc = load_yaml_strict(path) if path.is_file() else {"datasets_version": 1, "title": f"{board.name} leaderboard",
                                                         "datasets": {}}
    old = (doc.get("datasets") or {}).get(dataset)
    if old is not None and (old.get("truth_checksum"), old.get("split")) != (entry["truth_checksum"], split):
        raise InputError(path, f"dataset {dataset!r} is already on this board for another truth store or split; "
                               "choose another --dataset")
    if old is None:
        doc.setdefault("datasets", {})[dataset] = entry
    validate_datasets(doc, path)
    (board / "submissions").mkdir(parents=True, exist_ok=True)
    if old is None:
        write_text(path, dump_yaml(doc, width=110))
    template = board / "templates" / f"{dataset}.meta.yml"
    template.parent.mkdir(exist_ok=True)
    write_text(template, meta_template(board, dataset))
    what = "added to" if path.is_file() and old is None and len(doc["datasets"]) > 1 else (
        "already on" if old is not None else "created")
    return (f"board {board}: dataset {dataset} ({entry['kind']}, truth {truth}, checksum "
            f"{entry['truth_checksum'][:12]}…) {what} {path}; fill in {template} and submit with "
            f"`hambench leaderboard submit PREDS --meta {template} --board {board}`")
