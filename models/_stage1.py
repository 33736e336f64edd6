"""The stage 1 of a two-stage model (HarmoSE): loading it from its checkpoint for a new run, and rebuilding it from
the record a two-stage checkpoint keeps, so that the checkpoint is self-contained.

A two-stage checkpoint holds the stage-1 weights in its state (``stage1.*``) and, at its top level, ``stage1``:
:func:`stage1_record` of the stage-1 checkpoint it was trained from (model name, config, basis layout, and, for
the record only, its path, step and store checksum). :func:`hambench.models.run.load_model` and ``train
--resume`` rebuild the module from that record and never read the stage-1 file again.
"""

from __future__ import annotations

from pathlib import Path

from hambench.basis import BasisLayout
from hambench.config import from_dict
from hambench.errors import InputError
from hambench.training import Checkpoint

from . import registry

__all__ = ["stage1_record", "load_stage1", "stage1_of"]


def stage1_record(ck: dict) -> dict:
    """What a two-stage checkpoint records about its stage 1 (``ck``: the stage-1 checkpoint dict): enough to
    rebuild the module without the file (its weights travel in the two-stage model's state, ``stage1.*``)."""
    return {"name": ck["model"]["name"], "config": ck["model"]["config"], "layout": ck["layout"],
            "checkpoint": str(Path(ck["path"]).resolve()), "step": int(ck["engine"].get("step", 0)),
            "store_checksum": (ck.get("store") or {}).get("checksum")}


def _stage1_from_record(record: dict, where, layout, accepted: tuple[str, ...], dtype: str):
    """The stage-1 module described by ``record`` (weights as initialised: the caller loads the state)."""
    try:
        spec = registry.get(record["name"])
        cfg = from_dict(spec.config_cls, record["config"], where, prefix="stage1.config.")
        lay = BasisLayout.from_dict(record["layout"])
    except InputError as e:
        raise InputError(where, f"the recorded stage-1 model cannot be built: {e.problem}") from None
    except Exception as e:
        raise InputError(where, f"the recorded stage-1 model is unreadable: {type(e).__name__}: {e}") from None
    if spec.name not in accepted:
        raise InputError(where, f"stage 1 is a {spec.name!r} model; this model needs {' or '.join(accepted)}")
    lay.check_compatible(layout, where)
    from .run import build_model  # run.py imports this module

    return build_model(spec, cfg, lay, dtype, seed=0).eval()


def load_stage1(path, layout, accepted: tuple[str, ...], dtype: str, record: dict | None = None):
    """``(module, record)``: the frozen stage-1 module of a two-stage model (HarmoSE) and its
    :func:`stage1_record`.

    With ``record`` (a two-stage checkpoint's own, on load or ``--resume``) the module is rebuilt from it and
    ``path`` is not read: the two-stage state then supplies the weights. Otherwise it is read from the
    checkpoint ``path``. Refuses (one :class:`InputError` line) a missing path or file, a checkpoint of a model
    not in ``accepted`` and one whose basis does not fit ``layout`` (a stage 1 of another store's species or
    shells). The module is in eval mode.
    """
    if record is not None:
        return _stage1_from_record(record, "the checkpoint's stage-1 record", layout, accepted, dtype), record
    if not path:
        raise InputError("model.stage1", "HarmoSE needs a trained stage-1 checkpoint: pass --stage1 CKPT "
                                         f"(a {' or '.join(accepted)} run folder or .pt file)")
    p = Path(path)
    if not p.exists():
        raise InputError(p, "stage-1 checkpoint not found")
    from .run import load_model

    model, ck, lay = load_model(p, device="cpu", dtype=dtype)
    name = ck["model"]["name"]
    if name not in accepted:
        raise InputError(p, f"stage-1 checkpoint is a {name!r} model; this HarmoSE needs {' or '.join(accepted)}")
    try:
        lay.check_compatible(layout, p)
    except InputError as e:
        raise InputError(p, f"stage-1 model does not fit these data: {e.problem}") from None
    return model, stage1_record(ck)


def stage1_of(spec, ck, where) -> dict | None:
    """The stage-1 record of a two-stage checkpoint ``ck`` (a dict or :class:`Checkpoint`; None: a new run).
    A checkpoint without one (written before checkpoints were self-contained) is refused with one line."""
    if ck is None or not spec.stage1:
        return None
    d = ck.meta if isinstance(ck, Checkpoint) else ck
    if "stage1" in d:
        return d["stage1"]
    cfg = (ck.model if isinstance(ck, Checkpoint) else ck["model"])["config"]
    if cfg.get("cascade", True) or cfg.get("fuse_stage1", True):
        raise InputError(where, f"a {spec.name} checkpoint of an older format (no stage-1 record; its g_i read edge "
                                "directions): retrain stage 2 with this hambench")
    return None
