"""Prepared stores against a record made with the code before the driver's rewrite (issue 20).

What hambench defines is compared byte for byte: the store's layout (the list of its files), every ``zarr.json``
(after dropping the attributes that name where and with what version it was made: ``source.input``,
``created_by``; and the seal, added after the record was made: ``shards`` restates the sizes of the files compared
here, ``content_checksum`` hashes float arrays whose last bits may vary, see below), and every integer, boolean and string array (edges, offsets, ids, splits: sha256 of each chunk
file). Float arrays (positions, H, S, T, cells, rotations, energies) come out of floating-point libraries —
BLAS and Numba for rotated copies, numpy for unit conversions — whose last bits may change with their versions,
so they are compared by value: dtype and shape exactly, and a cosine-weighted fingerprint Σ x_k cos(k) (PySCF's
``lib.fp``) with the L1 norm Σ|x_k|, each to ``GOLDEN_RTOL`` relative to that norm. Any changed element larger
than ~1e-10 of the array's norm changes the fingerprint beyond the tolerance.

The record is produced by running this file as a script with a checkout whose stores are known good::

    .venv/bin/python tests/test_store_golden.py > tests/data/store_golden.json
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from hambench.testing import TOL

#: relative tolerance (of an array's L1 norm) of float arrays' fingerprints: libraries differ by ~1 ulp per element
GOLDEN_RTOL = TOL.fingerprint

#: (name, source, realdata fixture or None, prepare options)
CASES = [
    ("synthetic_aug", "synthetic/random", None, {"count": 6, "augment": 2, "seed": 5}),
    ("synthetic_aug_w2", "synthetic/random", None, {"count": 6, "augment": 2, "seed": 5, "workers": 2}),
    ("deeph_legacy_aug", "deeph/folder", "deeph_legacy_MoTe2", {"augment": 1, "seed": 4}),
    ("deeph_dock", "deeph/folder", "deeph_new_MoTe2", {}),
    ("openmx_graphene", "openmx/scfout", "openmx_graphene_scfout", {}),
]


def _canonical_meta(raw: bytes) -> bytes:
    meta = json.loads(raw)
    attrs = meta.get("attributes")
    if isinstance(attrs, dict):
        attrs.pop("created_by", None)
        attrs.pop("shards", None)  # the seal (issue 30): derived from the files compared one by one
        attrs.pop("content_checksum", None)
        if isinstance(attrs.get("source"), dict):
            attrs["source"].pop("input", None)
    return json.dumps(meta, sort_keys=True).encode()


def _float_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every float/complex array of the store, by its folder (relative path)."""
    import zarr

    out = {}
    for meta in sorted(path.rglob("zarr.json")):
        m = json.loads(meta.read_bytes())
        if m.get("node_type") == "array" and str(m["data_type"]).startswith(("float", "complex")):
            rel = meta.parent.relative_to(path).as_posix()
            out[rel] = np.asarray(zarr.open_array(str(meta.parent), mode="r")[...])
    return out


def fingerprint(x: np.ndarray) -> dict:
    """dtype, shape, Σ x_k cos(k) (real and imaginary parts) and Σ |x_k| of a float array, in float64."""
    flat = np.asarray(x).reshape(-1).astype(np.complex128)
    w = np.cos(np.arange(flat.size, dtype=np.float64))
    fp = complex(np.dot(flat, w))
    return {"dtype": str(x.dtype), "shape": list(x.shape), "fp": [fp.real, fp.imag], "l1": float(np.abs(flat).sum())}


def store_record(path: Path) -> dict:
    """The store's record: sha256 of each metadata and non-float chunk file, a fingerprint of each float array."""
    floats = _float_arrays(path)
    out = {}
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(path).as_posix()
        if f.name != "zarr.json" and any(rel.startswith(a + "/") for a in floats):
            out[rel] = "float chunk"  # its values are in the array's fingerprint
            continue
        raw = _canonical_meta(f.read_bytes()) if f.name == "zarr.json" else f.read_bytes()
        out[rel] = hashlib.sha256(raw).hexdigest()
    for a, x in floats.items():
        out[f"{a} (values)"] = fingerprint(x)
    return out


def differences(got: dict, want: dict) -> list[str]:
    """What differs between two records: files, bytes, or float values beyond ``GOLDEN_RTOL``."""
    bad = []
    if sorted(got) != sorted(want):
        return [f"files differ: missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}"]
    for k, w in want.items():
        g = got[k]
        if isinstance(w, str):
            if g != w:
                bad.append(f"{k}: bytes differ")
            continue
        if g["dtype"] != w["dtype"] or g["shape"] != w["shape"]:
            bad.append(f"{k}: {g['dtype']}{g['shape']} != {w['dtype']}{w['shape']}")
            continue
        scale = GOLDEN_RTOL * max(w["l1"], 1.0)
        err = max(abs(g["l1"] - w["l1"]), *(abs(a - b) for a, b in zip(g["fp"], w["fp"])))
        if err > scale:
            bad.append(f"{k}: values differ (fingerprint off by {err:.3g} > {scale:.3g})")
    return bad


INPUTS = Path("/tmp/hambench_golden_inputs")


def _realdata(name):
    from hambench.testing import realdata_path

    return realdata_path(name)


def make(case, where: Path) -> Path:
    from hambench.pipelines import prepare

    name, source, fixture, opts = case
    inp = None
    if fixture is not None:
        # stores record their input files' paths (structures/sources): one fixed place, whatever the checkout
        inp = INPUTS / fixture
        if not (inp / ".complete").exists():
            tmp = Path(tempfile.mkdtemp(dir=INPUTS.parent))
            shutil.copytree(_realdata(fixture), tmp / fixture)
            INPUTS.mkdir(exist_ok=True)
            try:
                (tmp / fixture).rename(inp)
            except OSError:
                pass  # another run put it there first
            (inp / ".complete").touch()
            shutil.rmtree(tmp, ignore_errors=True)
    out = where / f"{name}.zarr"
    prepare(source, inp, out, quiet=True, **opts)
    return out


#: the record (tests/data/store_golden.json, written by running this file as a script)
RECORD = Path(__file__).resolve().parent / "data" / "store_golden.json"

if __name__ == "__main__":
    res = {}
    for case in CASES:
        with tempfile.TemporaryDirectory(dir="/tmp") as d:
            res[case[0]] = store_record(make(case, Path(d)))
    res.pop("synthetic_aug_w2")
    json.dump(res, sys.stdout, indent=1, sort_keys=True)
    sys.exit(0)

import pytest  # noqa: E402

GOLDEN: dict[str, dict] = json.loads(RECORD.read_text())
# any number of workers writes the same bytes: the 2-worker store must equal the 1-worker one
GOLDEN["synthetic_aug_w2"] = GOLDEN["synthetic_aug"]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_store_unchanged(case, tmp_path):
    from hambench.testing import require_realdata

    if case[2] is not None:
        require_realdata(case[2])
    bad = differences(store_record(make(case, tmp_path)), GOLDEN[case[0]])
    assert not bad, "the store differs from its record:\n" + "\n".join(bad)


def test_the_record_sees_changes(tmp_path):
    """The comparison itself: a one-ulp change of a float is tolerated, a 1e-6 change of one element, a flipped
    integer byte or an extra file is not."""
    from hambench.pipelines import prepare

    out = tmp_path / "s.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=2, seed=1)
    want = store_record(out)
    import zarr

    H = zarr.open_array(str(out / "blocks" / "H"), mode="r+")
    h = H[...]
    H[...] = np.nextafter(h, np.inf)  # one ulp everywhere
    assert not differences(store_record(out), want)
    h2 = h.copy()
    h2[3] += 1e-6 * max(np.abs(h).sum(), 1.0)
    H[...] = h2
    assert any("blocks/H (values)" in b for b in differences(store_record(out), want))
    H[...] = h
    src = zarr.open_array(str(out / "edges" / "src"), mode="r+")
    s = src[...]
    s[0] = s[0] + 1
    src[...] = s
    assert any(b.startswith("edges/src/") and "bytes differ" in b for b in differences(store_record(out), want))
