"""The world the fuzz and fault suite damages (tests/test_faults.py), and the damages themselves.

:func:`build_world` makes, once per session, a folder with everything the commands read: a truth store (the
embedded demo molecules), two prediction stores (truth + seeded noise), a board whose dataset names the truth by
a relative path and holds one recorded submission, a second submitter's ``meta.yml``, a trained ``toy`` run, a
built site, a ``scores.json`` and a structure file. Every checksum cache is warm, so reading a store writes
nothing. Each case copies the world, applies one damage (the functions below return ``f(world_path)``), runs one
command and compares the folder byte for byte with its state before the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import yaml

#: the ten-line "billion laughs": 9 strings, each level nine aliases of the one before (9⁹ ≈ 4·10⁸ strings)
ALIAS_BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]\n" for p, x in zip("abcdefgh", "bcdefghi"))

SUB = "board/submissions/alpha/qm9"  # the recorded submission


def build_world(root: Path, truth_src: Path) -> Path:
    """The pristine world in ``root`` (see the module docstring); returns ``root``."""
    from hambench.app.testing import cli
    from hambench.leaderboard.submit import submit
    from hambench.leaderboard.testing import example_meta, noisy_predictions, write_board, write_meta
    from hambench.store import store_checksum

    root.mkdir(parents=True)
    truth = root / "truth.zarr"
    shutil.copytree(truth_src, truth)
    noisy_predictions(truth, root / "preds.zarr", 0.010, seed=1, model="alpha")
    noisy_predictions(truth, root / "preds_beta.zarr", 0.002, seed=2, model="beta")
    write_board(root / "board", {"qm9": {"kind": "molecule", "truth_checksum": store_checksum(truth),
                                         "store": "../truth.zarr", "title": "QM9 demo molecules"}})
    write_meta(root / "alpha.yml", example_meta("alpha", "qm9"))
    write_meta(root / "beta.yml", example_meta("beta", "qm9"))
    submit(root / "preds.zarr", root / "alpha.yml", board=root / "board", plots=False)
    r = cli("train", "toy", "--data", truth, "-o", root / "run", "--max-epochs", 1)
    assert r.exit_code == 0, r.output
    r = cli("leaderboard", "build", "--board", root / "board", "-o", root / "site")
    assert r.exit_code == 0, r.output
    r = cli("score", root / "preds.zarr", "-o", root / "scores.json", "--json")
    assert r.exit_code == 0, r.output
    (root / "structures.xyz").write_text("3\nwater\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n")
    (root / "outside").mkdir()
    for store in ("truth.zarr", "preds.zarr", "preds_beta.zarr"):
        store_checksum(root / store)  # the cache written now: reading a store later writes nothing
    return root


def snapshot(root: Path) -> dict:
    """Every path under ``root``: ("dir",), ("link", target) or ("file", sha256, mode)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir",)
        else:
            out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return out


def changes(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots: ``+path`` added, ``-path`` removed, ``~path`` changed."""
    return ([f"+{k}" for k in sorted(set(after) - set(before))] + [f"-{k}" for k in sorted(set(before) - set(after))]
            + [f"~{k}" for k in sorted(set(before) & set(after)) if before[k] != after[k]])


# --- damages: each returns f(world) -------------------------------------------------------------------------
def nothing():
    return lambda w: None


def write(rel: str, content):
    def f(w):
        p = w / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
    return f


def yaml_edit(rel: str, change):
    def f(w):
        d = yaml.safe_load((w / rel).read_text(encoding="utf-8"))
        change(d)
        (w / rel).write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return f


def json_edit(rel: str, change):
    def f(w):
        d = json.loads((w / rel).read_text(encoding="utf-8"))
        change(d)
        (w / rel).write_text(json.dumps(d, indent=1), encoding="utf-8")
    return f


def reseal(files: bool = True, digest: bool = True, sub: str = SUB):
    """Update the record of ``sub`` after an edit, as a forger would: its file digests and/or its own digest."""
    from hambench.leaderboard.record import record_digest, record_files

    def f(w):
        d = w / sub
        rec = json.loads((d / "record.json").read_text())
        if files:
            rec["files"] = record_files(d)
        if digest:
            rec["digest"] = record_digest(rec)
        (d / "record.json").write_text(json.dumps(rec, indent=1))
    return f


def zarr_set(store: str, array: str, index: int, value):
    """One element of one array of a store changed in place (its chunk rewritten)."""
    def f(w):
        import zarr

        g = zarr.open_group(str(w / store), mode="r+")
        a = g[array][:]
        a[index] = value
        g[array][:] = a
    return f


def truncate(rel: str):
    """The file cut to half its length (a write that was interrupted)."""
    def f(w):
        p = w / rel
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return f


def copy(src: str, dst: str):
    def f(w):
        s, d = w / src, w / dst
        d.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if s.is_dir() else shutil.copyfile)(s, d)
    return f


def remove(rel: str):
    def f(w):
        p = w / rel
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    return f


def symlink(rel: str, target: str):
    def f(w):
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(w / target, w / rel)
    return f


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def forge_per_structure(d: dict) -> None:
    """Scale every H MAE of a scores.json consistently by 1e-5 (headline, worst, per structure)."""
    for p in d["per_structure"]:
        p["H_mae"] *= 1e-5
    d["metrics"]["H_mae"] = float(np.mean([p["H_mae"] for p in d["per_structure"]]))
    d["metrics"]["H_mae_max"] = max(p["H_mae"] for p in d["per_structure"])


def both(*fs):
    def f(w):
        for g in fs:
            g(w)
    return f
