"""Checkpoints: a frozen :class:`Checkpoint` value, written atomically and read back with one clear line for a
missing, corrupt or foreign file; and what a checkpoint records besides the weights (RNG states, the code's
version, a hash of the parameters).

A run writes ``last.pt`` and ``best.pt`` holding the model, optimiser and scheduler states, the RNG states, the
loop's counters, the configs and whatever ``meta`` the caller adds (model name, store checksum, basis layout,
edge cut-offs, code version); resuming from a loaded ``last.pt`` continues bit-identically on CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hambench import __version__
from hambench.atomic import write_bytes
from hambench.errors import InputError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "code_version",
    "params_sha256",
]

CHECKPOINT_FORMAT = "hambench-checkpoint"
CHECKPOINT_VERSION = 1

_REQUIRED_KEYS = ("format", "version", "model", "train_config", "state", "layout", "engine")


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """One saved state of a run, as :meth:`to_dict` writes it (``torch.load(weights_only=True)`` reads it).

    Fields left None are not written. ``meta`` holds the caller's other facts (``store``, ``edge_cutoffs``,
    ``edge_rule``, ``command``, …), written at the top level beside ``model`` and ``layout``; ``path`` is where
    the checkpoint was read from (never written).
    """

    model: dict | None  # {"name", "config", "preset"}
    layout: dict | None  # BasisLayout.to_dict()
    train_config: dict
    state: dict  # the model's state_dict
    engine: dict  # the loop's counters (epoch, step, batch_in_epoch, best, …)
    optimizer: dict | None = None
    schedule: dict | None = None
    rng: dict | None = None  # rng_state()
    code: dict | None = None  # code_version()
    world_size: int | None = None
    saved_at: str | None = None  # UTC, ISO 8601
    meta: dict = field(default_factory=dict)
    path: str | None = None

    def to_dict(self) -> dict:
        """The plain dict a checkpoint file holds (``format`` and ``version`` first)."""
        def present(*names):
            return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **present("model", "layout"),
                **self.meta, **present("train_config", "state", "optimizer", "schedule", "engine", "rng", "code",
                                       "world_size", "saved_at")}

    @classmethod
    def from_dict(cls, d: dict, where=None) -> "Checkpoint":
        """Check a checkpoint dict (format, version, required keys) and return it as a value; one
        :class:`InputError` naming ``where`` otherwise."""
        if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
            raise InputError(where, "not a hambench checkpoint (no 'format': 'hambench-checkpoint')")
        if d.get("version") != CHECKPOINT_VERSION:
            raise InputError(where, f"checkpoint version {d.get('version')}, this hambench reads {CHECKPOINT_VERSION}")
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise InputError(where, f"checkpoint lacks {missing}")
        names = {f.name for f in dataclasses.fields(cls)} - {"meta"}
        known = {k: v for k, v in d.items() if k in names}
        meta = {k: v for k, v in d.items() if k not in names and k not in ("format", "version")}
        return cls(**known, meta=meta)

    def to_bytes(self) -> bytes:
        """The file's bytes (``torch.save`` of :meth:`to_dict`)."""
        buf = io.BytesIO()
        torch.save(self.to_dict(), buf)
        return buf.getvalue()

    def save(self, path) -> Path:
        """Write atomically to ``path`` (:func:`save_checkpoint`)."""
        return save_checkpoint(path, self.to_bytes())

    @classmethod
    def load(cls, path, map_location="cpu") -> "Checkpoint":
        """Read and check a checkpoint file, or a run folder's ``best.pt`` (else ``last.pt``)."""
        path = _checkpoint_file(Path(path))
        try:
            d = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise InputError(path, f"not a readable checkpoint (corrupt or truncated?): {type(e).__name__}: {msg}") from None
        return dataclasses.replace(cls.from_dict(d, path), path=str(path))


def _checkpoint_file(path: Path) -> Path:
    if (path / "zarr.json").is_file():
        raise InputError(path, "is a store, not a checkpoint: give a run folder (best.pt, last.pt) or a .pt file")
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise InputError(path, "a run folder without best.pt or last.pt (not trained yet?)")
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    return path


def save_checkpoint(path, obj) -> Path:
    """``obj`` (a dict, a :class:`Checkpoint` or bytes already serialised) written atomically
    (:func:`hambench.atomic.write_bytes`): a reader never sees half a checkpoint, and a killed run leaves the
    previous one intact."""
    if isinstance(obj, Checkpoint):
        data = obj.to_bytes()
    elif isinstance(obj, (bytes, bytearray)):
        data = obj
    else:
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
    return write_bytes(path, bytes(data))


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checked checkpoint (:meth:`Checkpoint.load`) as a plain dict, with ``path`` added."""
    ck = Checkpoint.load(path, map_location)
    return {**ck.to_dict(), "path": ck.path}


# --- what a checkpoint records besides the weights ------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore the states :func:`rng_state` recorded (CUDA's only where the GPU count allows)."""
    py = st["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except Exception:  # another GPU count: CPU bit-identity is the promise
            pass


_CODE_VERSION: dict | None = None


def code_version() -> dict:
    """hambench version and, in a git checkout, the commit (with ``dirty`` when files differ)."""
    global _CODE_VERSION
    if _CODE_VERSION is None:
        out = {"hambench": __version__}
        here = Path(__file__).resolve().parent
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                    timeout=5).stdout.strip()
            if commit:
                out["git_commit"] = commit
                dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                       capture_output=True, text=True, timeout=5).stdout.strip()
                out["git_dirty"] = bool(dirty)
        except Exception:
            pass
        _CODE_VERSION = out
    return dict(_CODE_VERSION)


def params_sha256(model) -> str:
    """sha256 of every parameter's bytes, in ``named_parameters`` order (replica identity under DDP)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
