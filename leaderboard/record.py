"""A submission's record (``record.json``): what ``submit`` scored, sealed beside what it wrote.

::

    submissions/<model>/<dataset>/record.json
      record_version: 1
      model, dataset, hambench_version
      truth_checksum            content checksum of the truth store the predictions were scored against
      predictions               {name, checksum}: the prediction store's file name and content checksum
      score_options             the board's scoring options for the dataset at submit time
      files                     {"meta.yml": sha256, "scores.json": sha256, "plots/<name>.png": sha256, ...}
      digest                    sha256 of the canonical JSON of everything above

Every reader of a board (``list``, ``build``, ``submit`` reading back) runs :func:`check_record` on each
submission and refuses, in one line naming the file, a submission whose files are not the recorded ones (edited,
added, removed or linked), whose record's digest is not the digest of its contents, whose ``scores.json`` names
other truth or predictions checksums than the record, whose truth is not the board's dataset's, whose scoring
options are not the dataset's current ones, or whose headline numbers contradict its own per-structure numbers
(:func:`check_consistency`).

What this proves, and what not: the digests are plain SHA-256 of public files, so whoever edits ``scores.json``
can also recompute the digests; a record is a seal against careless or naive edits and a clear diff in review,
not a signature. The proof is the re-derivation: ``build --predictions DIR`` scores the recorded predictions
again (:mod:`.verify`) and refuses a ``scores.json`` that does not follow from them; ``--strict`` refuses a
record whose predictions it cannot find.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from hambench import __version__
from hambench.atomic import write_text
from hambench.errors import InputError
from hambench.store import file_sha256  # the one file digest (re-exported: readers use record.file_sha256)

from .schema import check_schema

__all__ = ["RECORD", "RECORD_VERSION", "RECORD_SCHEMA", "CONSISTENCY_RTOL", "file_sha256", "record_digest",
           "record_files", "make_record", "write_record", "read_record", "check_record", "check_scores_chain",
           "check_consistency", "bare_checksum"]

#: the record's file name inside a submission folder
RECORD = "record.json"
RECORD_VERSION = 1
#: per-structure H MAEs against the headline ones: the scorer takes the same float64 mean, so only the order of
#: the additions may differ (a few ulps over tens of structures)
CONSISTENCY_RTOL = 1e-9

_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
RECORD_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "hambench leaderboard submission record (record.json)",
    "type": "object",
    "additionalProperties": False,
    "required": ["record_version", "model", "dataset", "hambench_version", "truth_checksum", "predictions",
                 "score_options", "files", "digest"],
    "properties": {
        "record_version": {"const": RECORD_VERSION},
        "model": {"type": "string"},
        "dataset": {"type": "string"},
        "hambench_version": {"type": "string"},
        "truth_checksum": _SHA,
        "predictions": {"type": "object", "additionalProperties": False, "required": ["name", "checksum"],
                        "properties": {"name": {"type": "string", "minLength": 1}, "checksum": _SHA}},
        "score_options": {"type": "object"},
        "files": {"type": "object", "propertyNames": {"pattern": r"^(meta\.yml|scores\.json|plots/[^/]+\.png)$"},
                  "additionalProperties": _SHA, "required": ["meta.yml", "scores.json"]},
        "digest": _SHA,
    },
}


def bare_checksum(c) -> str:
    """A checksum without its ``sha256:`` prefix."""
    c = str(c)
    return c.split(":", 1)[1] if c.startswith("sha256:") else c


def record_digest(record: dict) -> str:
    """SHA-256 of the record's canonical JSON (sorted keys, no spaces), its ``digest`` field left out."""
    body = {k: v for k, v in record.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def record_files(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file of a submission folder but the record itself.

    A symbolic link, or anything that is neither a plain file nor a folder, is refused: a submission holds only
    its own files.
    """
    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            raise InputError(p, "is a symbolic link; a submission holds only its own files")
        if p.is_dir():
            continue
        if not p.is_file():
            raise InputError(p, "is not a plain file")
        rel = p.relative_to(folder).as_posix()
        if rel != RECORD:
            out[rel] = file_sha256(p)
    return out


def make_record(folder, model: str, dataset: str, truth_checksum: str, predictions_name: str,
                predictions_checksum: str, score_options: dict) -> dict:
    """The record of the submission written in ``folder`` (its files as they are now), with its digest."""
    record = {
        "record_version": RECORD_VERSION, "model": model, "dataset": dataset, "hambench_version": __version__,
        "truth_checksum": bare_checksum(truth_checksum),
        "predictions": {"name": str(predictions_name), "checksum": bare_checksum(predictions_checksum)},
        "score_options": dict(score_options), "files": record_files(folder),
    }
    record["digest"] = record_digest(record)
    return record


def write_record(folder, record: dict) -> Path:
    return write_text(Path(folder) / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_record(folder) -> dict:
    """The parsed, schema-checked ``record.json`` of a submission folder (digest not yet checked)."""
    path = Path(folder) / RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "missing: `hambench leaderboard submit` records every submission (the digests of its "
                               "files, the predictions' and truth's checksums); resubmit it") from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read as JSON ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise InputError(path, "not a submission record (expected a JSON object)")
    check_schema(data, RECORD_SCHEMA, path)
    return data


def _check_files(folder: Path, record: dict) -> None:
    have = record_files(folder)
    want = record["files"]
    for rel in sorted(set(want) | set(have)):
        if rel not in have:
            raise InputError(folder / rel, "recorded at submit but missing")
        if rel not in want:
            raise InputError(folder / rel, "is not in the submission's record (added after submit)")
        if have[rel] != want[rel]:
            raise InputError(folder / rel, f"changed after submit: sha256 {have[rel][:12]}…, the record says "
                                           f"{want[rel][:12]}… (scores are recomputed by `hambench leaderboard "
                                           "submit`, never edited: resubmit)")


def check_record(folder, model: str, dataset: str, truth_checksum: str, score_options: dict) -> dict:
    """Check a submission folder's files against its record; return the record.

    ``truth_checksum`` and ``score_options`` are the board's dataset entry's. The ``scores.json`` links of the
    chain are checked by :func:`check_scores_chain` once it is parsed.
    """
    folder = Path(folder)
    path = folder / RECORD
    record = read_record(folder)
    got = record_digest(record)
    if got != record["digest"]:
        raise InputError(path, f"its digest {record['digest'][:12]}… is not the digest of its contents ({got[:12]}…): "
                               "the record was edited after submit")
    if (record["model"], record["dataset"]) != (model, dataset):
        raise InputError(path, f"records model {record['model']!r}, dataset {record['dataset']!r} but lies in "
                               f"submissions/{model}/{dataset}")
    _check_files(folder, record)
    if record["truth_checksum"] != bare_checksum(truth_checksum):
        raise InputError(path, f"scored against truth {record['truth_checksum'][:12]}…, the board's dataset "
                               f"{dataset!r} is {bare_checksum(truth_checksum)[:12]}… (the dataset's truth "
                               "changed since: resubmit)")
    if record["score_options"] != dict(score_options):
        raise InputError(path, f"scored with options {json.dumps(record['score_options'], sort_keys=True)}, the "
                               f"board's dataset {dataset!r} scores with {json.dumps(dict(score_options), sort_keys=True)}"
                               " (changed since: resubmit)")
    return record


def check_scores_chain(scores: dict, record: dict, where) -> None:
    """``scores.json`` names the record's truth and predictions checksums, and its numbers agree with each other."""
    for key, want in (("truth", record["truth_checksum"]), ("predictions", record["predictions"]["checksum"])):
        got = (scores.get(key) or {}).get("checksum") if isinstance(scores.get(key), dict) else None
        if got is None or bare_checksum(got) != want:
            raise InputError(where, f"{key}.checksum {str(got)[:12]}… is not the record's {want[:12]}…")
    check_consistency(scores, where)


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= CONSISTENCY_RTOL * max(abs(a), abs(b))


def check_consistency(scores: dict, where) -> None:
    """The headline H MAE is the mean, and the worst structure's the maximum, of the per-structure H MAEs.

    Both are in every ``scores.json`` hambench writes (``per_structure`` lists every scored structure); a
    scores file without per-structure numbers has nothing to check here.
    """
    per = [p.get("H_mae") for p in scores.get("per_structure") or [] if isinstance(p, dict)]
    if not per or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in per):
        return
    m = scores.get("metrics") or {}
    for key, value in (("H_mae", math.fsum(per) / len(per)), ("H_mae_max", max(per))):
        got = m.get(key)
        if isinstance(got, (int, float)) and not isinstance(got, bool) and not _close(float(got), float(value)):
            what = "mean" if key == "H_mae" else "maximum"
            raise InputError(where, f"metrics.{key} = {got:.6g} is not the {what} {value:.6g} of its {len(per)} "
                                    "per-structure H MAEs (a number edited by hand)")
