"""A leaderboard folder ("board"): ``datasets.yml`` plus ``submissions/<model>/<dataset>/``.

::

    BOARD/
      datasets.yml                       # the board's datasets: kind, truth-store checksum, split, scoring options
      submissions/<model>/<dataset>/
        meta.yml                         # the submitter's metadata (meta.schema.json)
        scores.json                      # computed by hambench from the predictions at submit time
        plots/*.png                      # per-block heat maps and parity plots (hambench.scoring._plots), if any
        record.json                      # the digests of these files, the truth's and predictions' checksums

The repository's own board is this package's folder (``leaderboard/``). Every folder name is checked against
:data:`~hambench.leaderboard.schema.NAME_PATTERN` and every path component below the board must be a real
folder, not a symbolic link, so nothing read or written can lie outside the board. Every submission read is
checked against its record (:func:`~hambench.leaderboard.record.check_record`): a board edited by hand is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from hambench.errors import InputError

from .record import bare_checksum, check_record, check_scores_chain
from .schema import NAME_PATTERN, load_yaml_strict, validate_datasets, validate_meta


__all__ = ["DEFAULT_BOARD", "Dataset", "Submission", "Board", "open_board", "check_name", "read_scores"]


def read_scores(path, missing: str = "no such file") -> dict:
    """A hambench ``scores.json`` (a mapping with a ``metrics`` mapping); :class:`InputError` otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, missing) from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read as JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise InputError(path, "not a hambench scores.json (no 'metrics' mapping)")
    return data

#: the board shipped in the repository (this package's folder)
DEFAULT_BOARD = Path(__file__).resolve().parent

_NAME = re.compile(NAME_PATTERN)


def check_name(name, what: str, where) -> str:
    """``name`` if it is a safe single folder name, else :class:`InputError` (no '/', '..', leading '.')."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InputError(where, f"{what} {name!r} is not a valid name (letters, digits, '._+-'; no '/', "
                                "no leading '.', no '..')")
    return name


@dataclass(frozen=True)
class Dataset:
    """One dataset of a board (an entry of ``datasets.yml``)."""

    name: str
    kind: str
    truth_checksum: str
    split: str | None = None
    store: Path | None = None
    primary: str = "H_mae"
    score: dict = field(default_factory=dict)
    title: str = ""
    description: str = ""


@dataclass
class Submission:
    """One recorded submission: its folder, parsed ``meta.yml``, ``scores.json``, plot files and checked record."""

    model: str
    dataset: str
    path: Path
    meta: dict
    scores: dict
    plots: list[Path]
    record: dict = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.meta.get("display_name") or self.model


class Board:
    """A board opened for reading (and by :func:`~hambench.leaderboard.submit.submit` for recording)."""

    def __init__(self, path: Path, datasets: dict[str, Dataset], title: str):
        self.path = path
        self.datasets = datasets
        self.title = title

    def __repr__(self) -> str:
        return f"Board({str(self.path)!r}, datasets={sorted(self.datasets)})"

    @property
    def submissions_dir(self) -> Path:
        return self.path / "submissions"

    def _real_dir(self, p: Path, where) -> None:
        if p.is_symlink():
            raise InputError(where, f"{p} is a symbolic link; board folders must be real folders inside the board")
        if p.exists() and not p.is_dir():
            raise InputError(where, f"{p} exists and is not a folder")

    def submission_dir(self, model: str, dataset: str, where=None) -> Path:
        """The folder of submission (model, dataset), checked to stay inside the board (it may not exist yet)."""
        where = where or self.path
        check_name(model, "model", where)
        check_name(dataset, "dataset", where)
        sub = self.submissions_dir
        self._real_dir(sub, where)
        mdir = sub / model
        self._real_dir(mdir, where)
        ddir = mdir / dataset
        self._real_dir(ddir, where)
        root = self.path.resolve()
        if not ddir.resolve().is_relative_to(root):  # defence in depth: names and links are already checked
            raise InputError(where, f"{ddir} resolves outside the board {root}")
        return ddir

    def dataset(self, name: str, where) -> Dataset:
        if name not in self.datasets:
            known = ", ".join(sorted(self.datasets)) or "none"
            raise InputError(where, f"dataset {name!r} is not on the board {self.path} (its datasets: {known})")
        return self.datasets[name]

    def truth_matches(self, dataset: Dataset, checksum: str) -> bool:
        return bare_checksum(dataset.truth_checksum) == bare_checksum(checksum)

    def read_submission(self, model: str, dataset: str) -> Submission:
        d = self.submission_dir(model, dataset)
        meta_path, scores_path = d / "meta.yml", d / "scores.json"
        meta = validate_meta(load_yaml_strict(meta_path), meta_path)
        if meta["model"] != model or meta["dataset"] != dataset:
            raise InputError(meta_path, f"says model {meta['model']!r}, dataset {meta['dataset']!r} but lies in "
                                        f"submissions/{model}/{dataset}")
        ds = self.dataset(dataset, meta_path)
        record = check_record(d, model, dataset, ds.truth_checksum, ds.score)
        scores = read_scores(scores_path, missing="missing: record submissions with `hambench leaderboard submit`")
        check_scores_chain(scores, record, scores_path)
        plots = sorted(d / rel for rel in record["files"] if rel.startswith("plots/"))
        return Submission(model, dataset, d, meta, scores, plots, record)

    def submissions(self) -> list[Submission]:
        """Every recorded submission, validated, sorted by (dataset, model)."""
        sub = self.submissions_dir
        if not sub.exists():
            return []
        self._real_dir(sub, self.path)
        out = []
        for mdir in sorted(sub.iterdir()):
            if mdir.name.startswith("."):  # .partial / .old folders of an interrupted submit
                continue
            for ddir in sorted(mdir.iterdir()) if mdir.is_dir() and not mdir.is_symlink() else [mdir]:
                if ddir.name.startswith("."):  # staging and replace_dir's hidden copy moved aside
                    continue
                if ddir is mdir:
                    raise InputError(mdir, "expected a folder submissions/<model>/ (a real folder, not a link)")
                out.append(self.read_submission(mdir.name, ddir.name))
        return sorted(out, key=lambda s: (s.dataset, s.model))


def open_board(path=None) -> Board:
    """Open a board folder (default: the repository's ``leaderboard/``), validating ``datasets.yml``."""
    path = Path(path) if path is not None else DEFAULT_BOARD
    if not path.is_dir():
        raise InputError(path, "no such board folder")
    dpath = path / "datasets.yml"
    if not dpath.exists():
        raise InputError(dpath, "missing: a board needs datasets.yml naming its datasets and truth checksums")
    raw = validate_datasets(load_yaml_strict(dpath), dpath)
    datasets = {}
    for name, d in raw["datasets"].items():
        store = d.get("store")
        if store is not None:
            store = Path(store)
            store = store if store.is_absolute() else (path / store)
        datasets[name] = Dataset(
            name=name, kind=d["kind"], truth_checksum=d["truth_checksum"], split=d.get("split"), store=store,
            primary=d.get("primary", "H_mae"), score=dict(d.get("score", {})), title=d.get("title", name),
            description=d.get("description", ""),
        )
    return Board(path, datasets, raw.get("title", "hambench leaderboard"))
