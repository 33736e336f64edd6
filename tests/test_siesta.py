"""siesta/hsx: the real SIESTA 5.4.2 Si run against DeepH-dock's conversion, its own Si.EIG / Si.bands, sisl;
bad input; synthetic spin layouts."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.linalg as sl

from hambench.basis import _conventions as cv
from hambench.errors import InputError
from hambench.pipelines import get_source
from hambench.pipelines.siesta import SiestaSource, hsx_spin, hsx_to_structure, read_hsx
from hambench.testing import TOL, require_realdata


@pytest.fixture(scope="module")
def raw() -> Path:
    return require_realdata("siesta_Si", "siesta_raw")


@pytest.fixture(scope="module")
def si(raw):
    src = get_source("siesta/hsx", raw)
    (item,) = src.items()
    (s,) = src.read(item)
    return s


def read_deeph(folder: Path, name: str):
    with h5py.File(folder / name) as f:
        return f["atom_pairs"][:], f["chunk_boundaries"][:], f["entries"][:]


def dense_by_r(s):
    """(R list, H(R), S(R)) as dense (n_R, n, n) arrays in hambench order (built once per structure)."""
    norb = np.array([cv.n_orbitals(s.species[int(z)]) for z in s.Z])
    first = np.concatenate([[0], np.cumsum(norb)])
    rs, which = np.unique(s.shift, axis=0, return_inverse=True)
    n = first[-1]
    H = np.zeros((len(rs), n, n), s.H.dtype)
    S = np.zeros((len(rs), n, n))
    for e in range(s.nedges):
        i, j, r = s.src[e], s.dst[e], which.reshape(-1)[e]
        H[r, first[i]:first[i + 1], first[j]:first[j + 1]] = s.block(e, "H")
        S[r, first[i]:first[i + 1], first[j]:first[j + 1]] = s.block(e, "S")
    return rs, H, S


_DENSE = {}


def bloch(s, k):
    """H(k), S(k) = Σ_R e^{+2πi k·R} X(R) (fractional k), dense, hambench order."""
    if id(s) not in _DENSE:
        _DENSE[id(s)] = (s, dense_by_r(s))
    rs, H, S = _DENSE[id(s)][1]
    ph = np.exp(2j * np.pi * rs @ np.asarray(k, float))
    return np.tensordot(ph, H, 1), np.tensordot(ph, S, 1)


def test_equals_deeph_dock_conversion(si):
    """Same 294 (i, j, R) edges as DeepH-dock's conversion; blocks equal once both use the same Ry → eV."""
    si.validate()
    ref = require_realdata("siesta_Si", "deeph_new")
    assert si.species == {14: [0, 0, 1, 1, 2]}
    idx = si.edge_index()
    for name, which, scale in (("hamiltonian.h5", "H", cv.DEEPH_HARTREE_EV / 2 / cv.RYDBERG_EV),
                               ("overlap.h5", "S", 1.0)):
        pairs, cb, entries = read_deeph(ref, name)
        keys = {(int(i), int(j), int(a), int(b), int(c)) for a, b, c, i, j in pairs}
        assert keys == set(idx), "edge sets differ"
        worst = 0.0
        for n, (a, b, c, i, j) in enumerate(pairs):
            blk = si.block(idx[(i, j, a, b, c)], which)
            want = entries[cb[n]:cb[n + 1]].reshape(blk.shape)
            worst = max(worst, float(np.abs(blk * scale - want).max()))
            # with each side's own constant the blocks differ by (27.2113845/2)/Ry_CODATA − 1 ≈ 6.4e-8 relative
            np.testing.assert_allclose(blk, want, rtol=TOL.rydberg_siesta, atol=TOL.constants_floor)
        assert worst < TOL.exact64, f"{which}: {worst}"  # same constant → identical up to rounding
    # sorted (i, j, R) and self pairs present
    order = np.lexsort((si.shift[:, 2], si.shift[:, 1], si.shift[:, 0], si.dst, si.src))
    assert np.array_equal(order, np.arange(si.nedges))
    assert (0, 0, 0, 0, 0) in idx and (1, 1, 0, 0, 0) in idx


def test_structure_and_metadata(si, raw):
    # Si.XV: cell 5.130606428 Bohr off-diagonal, atom 2 at 2.565303214 Bohr
    np.testing.assert_allclose(si.cell, (np.ones((3, 3)) - np.eye(3)) * 5.130606428 * cv.BOHR_ANGSTROM, rtol=TOL.text_10_digits)
    np.testing.assert_allclose(si.pos[1], [2.565303214 * cv.BOHR_ANGSTROM] * 3, rtol=TOL.text_10_digits)
    assert list(si.Z) == [14, 14] and si.nelectron == 8.0
    assert si.fermi_level == pytest.approx(-4.209317, abs=TOL.text_6_digits)  # SIESTA.log "Fermi = -4.209317" (eV)
    assert si.energy == pytest.approx(-230.022900, abs=TOL.text_6_decimals)  # SIESTA.log "Total = -230.022900"
    attrs = SiestaSource(raw).attrs()
    assert attrs.dft["code"] == "SIESTA" and attrs.dft["version"].startswith("5.4.2")
    assert attrs.dft["hsx_version"] == 2 and attrs.spinful is False
    assert si.sources and all(len(h) == 64 for _, h in si.sources)


def test_bands_match_si_eig(si, raw):
    """Eigenvalues of H(k), S(k) from the stored blocks vs SIESTA's own Si.EIG at the Si.KP k-points.

    Si.KP prints Cartesian k (1/Bohr) with 6 decimals; fractional k = a_i·k/2π is snapped to the 8×8×8 grid
    (1/16 multiples; the printed values are within 1e-6 of it). Si.EIG is absolute (E_F on its first line).
    Tolerance: 2e-7 eV on the 4 valence bands, 1e-7 eV + 2e-6·|E| on all 26 (the high bands, up to 100 eV,
    carry SIESTA's own Ry→eV constant and the EIG print precision).
    """
    kp = np.loadtxt(raw / "Si.KP", skiprows=1)[:, 1:4]
    kfrac = kp @ (si.cell / cv.BOHR_ANGSTROM).T / (2 * np.pi)
    snapped = np.round(kfrac * 16) / 16
    assert np.abs(snapped - kfrac).max() < TOL.text_6_digits
    tok = (raw / "Si.EIG").read_text().split()
    nb, nspin, nk = int(tok[1]), int(tok[2]), int(tok[3])
    assert (nb, nspin, nk) == (26, 1, len(kp))
    eig = np.array(tok[4:], float).reshape(nk, nb + 1)[:, 1:]
    assert float(tok[0]) == pytest.approx(si.fermi_level, abs=TOL.text_6_decimals)
    worst_val, worst_rel = 0.0, 0.0
    for n in range(0, nk, 4):  # every 4th k-point: 74 of 296, keeps the test fast
        H, S = bloch(si, snapped[n])
        e = sl.eigh(H, S, eigvals_only=True)
        d = np.abs(e - eig[n])
        worst_val = max(worst_val, float(d[:4].max()))
        worst_rel = max(worst_rel, float((d / (TOL.siesta_eig_floor / TOL.siesta_eig_rel + np.abs(eig[n]))).max()))
    assert worst_val < TOL.siesta_eig, worst_val
    assert worst_rel < TOL.siesta_eig_rel, worst_rel


def _band_kpoints(fdf: Path) -> np.ndarray:
    """k-points of a BandLines block (ReciprocalLatticeVectors scale): the first point, then n points per line
    ending at the line's point."""
    lines, inside = [], False
    for raw in fdf.read_text().splitlines():
        low = raw.strip().lower()
        if low.startswith("%block bandlines"):
            inside = True
            continue
        if low.startswith("%endblock"):
            inside = False
        if inside and raw.strip():
            p = raw.split()
            lines.append((int(p[0]), np.array([float(x) for x in p[1:4]])))
    pts = [lines[0][1]]
    for (n, k), (_, prev) in zip(lines[1:], lines[:-1]):
        pts += [prev + (k - prev) * (t + 1) / n for t in range(n)]
    return np.array(pts)


def test_bands_match_si_bands(si, raw):
    """Si.bands along L–Γ–X–U–Γ (121 k-points from the fdf BandLines): 4 decimals printed → 1e-4 eV."""
    k = _band_kpoints(raw / "Si.fdf")
    tok = (raw / "Si.bands").read_text().split()
    ef = float(tok[0])
    nb, nspin, nk = int(tok[5]), int(tok[6]), int(tok[7])
    assert (nb, nspin, nk) == (26, 1, len(k)) == (26, 1, 121)
    vals = np.array(tok[8:8 + nk * (nb + 1)], float).reshape(nk, nb + 1)[:, 1:]
    assert ef == pytest.approx(si.fermi_level, abs=TOL.text_10_digits)
    worst = 0.0
    for n in range(0, nk, 6):
        H, S = bloch(si, k[n])
        e = sl.eigh(H, S, eigvals_only=True)
        worst = max(worst, float(np.abs(e[:12] - vals[n, :12]).max()))
    assert worst < TOL.text_4_decimals, worst


def test_against_sisl(si, raw, tmp_path):
    """sisl (an independent HSX reader) gives the same H(k), S(k) eigenvalues at a generic k-point."""
    sisl = pytest.importorskip("sisl")
    # This file was written by ifort, whose logical .true. is -1; sisl 0.20 only accepts 1 (KeyError: -1), so
    # sisl reads a copy whose is_dp record holds 1 — the only byte changed.
    data = bytearray((raw / "Si.HSX").read_bytes())
    assert struct.unpack("<iii", data[12:24]) == (4, -1, 4)
    data[16:20] = struct.pack("<i", 1)
    copy = tmp_path / "Si.HSX"
    copy.write_bytes(bytes(data))
    H = sisl.get_sile(str(copy)).read_hamiltonian()
    k = np.array([0.13, -0.27, 0.41])
    ours = sl.eigh(*bloch(si, k), eigvals_only=True)
    # sisl: eV, its own phase convention (eigenvalues are gauge-invariant), energies measured from E_F
    theirs = np.asarray(H.eigh(k=k)) + si.fermi_level
    err = np.abs(ours - theirs)
    # sisl converts Ry → eV with its own constant: allow 1e-6 relative on energies up to ~100 eV
    assert np.all(err <= TOL.constants_floor + TOL.unit_constants * np.abs(theirs)), err.max()


# --- bad input -------------------------------------------------------------------------------------------
@pytest.fixture()
def run_copy(raw, tmp_path):
    dst = tmp_path / "run"
    dst.mkdir()
    for name in ("Si.HSX", "Si.XV", "Si.fdf", "SIESTA.log", "OUTVARS.yml"):
        shutil.copy(raw / name, dst / name)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def test_missing_and_truncated(tmp_path, run_copy):
    with pytest.raises(InputError, match="no .HSX file"):
        SiestaSource(_empty(tmp_path))
    with pytest.raises(InputError, match="no such file"):
        SiestaSource(tmp_path / "absent")
    hsx = run_copy / "Si.HSX"
    data = hsx.read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 30):
        hsx.write_bytes(data[:cut])
        with pytest.raises(InputError, match="truncated") as e:
            hsx_to_structure(hsx)
        assert "Si.HSX" in str(e.value)
    # drop whole records at the end: the framing is fine, the record count is not
    hsx.write_bytes(data[: _record_starts(data)[-5]])
    with pytest.raises(InputError, match="truncated: 82 records"):
        read_hsx(hsx)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def _record_starts(data: bytes) -> list[int]:
    out, p = [], 0
    while p < len(data):
        out.append(p)
        (n,) = struct.unpack("<i", data[p:p + 4])
        p += n + 8
    return out


def test_corrupt_markers_and_version(run_copy):
    hsx = run_copy / "Si.HSX"
    data = bytearray(hsx.read_bytes())
    bad = bytearray(data)
    bad[8] ^= 0xFF  # end marker of the first record
    hsx.write_bytes(bytes(bad))
    with pytest.raises(InputError, match="record markers disagree"):
        read_hsx(hsx)
    bad = bytearray(data)
    bad[4:8] = struct.pack("<i", 7)
    hsx.write_bytes(bytes(bad))
    with pytest.raises(InputError, match="unknown HSX version 7"):
        read_hsx(hsx)
    hsx.write_bytes(struct.pack("<i4i i", 16, 26, 3250, 1, 100, 16))  # version-0 style first record
    with pytest.raises(InputError, match="version 0"):
        read_hsx(hsx)


def test_unknown_species(run_copy):
    hsx = run_copy / "Si.HSX"
    data = hsx.read_bytes()
    label = b"Si" + b" " * 18
    assert data.count(label) == 1
    hsx.write_bytes(data.replace(label, b"Qq" + b" " * 18))
    (run_copy / "Si.XV").unlink()
    (run_copy / "Si.fdf").unlink()
    with pytest.raises(InputError, match="unknown species 'Qq'"):
        hsx_to_structure(hsx)


def test_column_out_of_range(run_copy):
    hsx = run_copy / "Si.HSX"
    data = bytearray(hsx.read_bytes())
    starts = _record_starts(bytes(data))
    first_listh = starts[9] + 4  # records: 9 header records (v2, 1 species), then listh of orbital 1
    data[first_listh:first_listh + 4] = struct.pack("<i", 26 * 125 + 1)
    hsx.write_bytes(bytes(data))
    with pytest.raises(InputError, match="column index out of range"):
        read_hsx(hsx)


# --- synthetic spin layouts (no real spinful HSX was available) ------------------------------------------
def _with_spin(data: bytes, nspin: int, comps) -> bytes:
    """Rewrite the Si HSX with ``nspin`` H components, given as callables of the spinless H values."""
    starts = _record_starts(data)
    recs = [data[p + 4:p + 4 + struct.unpack("<i", data[p:p + 4])[0]] for p in starts]
    head = bytearray(recs[2])
    head[8:12] = struct.pack("<i", nspin)
    recs[2] = bytes(head)
    no_u = 26
    listh, h1, s = recs[9:9 + no_u], recs[9 + no_u:9 + 2 * no_u], recs[9 + 2 * no_u:]
    hs = []
    for c in comps:
        hs += [np.asarray(c(np.frombuffer(r, "<f8"), io), "<f8").tobytes() for io, r in enumerate(h1)]
    out = recs[:9] + listh + hs + s
    return b"".join(struct.pack("<i", len(r)) + r + struct.pack("<i", len(r)) for r in out)


def test_synthetic_spin_layouts(run_copy, si):
    hsx = run_copy / "Si.HSX"
    data = hsx.read_bytes()
    n = si.nedges
    # nspin 2: ↑ = H, ↓ = 2H  → [[H, 0], [0, 2H]]
    hsx.write_bytes(_with_spin(data, 2, [lambda v, io: v, lambda v, io: 2 * v]))
    s2 = hsx_to_structure(hsx)
    s2.validate()
    # nspin 8: components 0..7 = H·(1, 2, 0.1, 0.2, 0.01, 0.02, 0.1, −0.2) — ↑↓ = (0.1 − 0.2i)H, ↓↑ = (0.1 − 0.2i)H
    f8 = [1, 2, 0.1, 0.2, 0.01, 0.02, 0.1, -0.2]
    hsx.write_bytes(_with_spin(data, 8, [lambda v, io, a=a: a * v for a in f8]))
    s8 = hsx_to_structure(hsx)
    assert SiestaSource(run_copy).spinful_of(str(hsx)) is True and hsx_spin(hsx) == 8
    for e in range(0, n, 7):
        h = si.block(e, "H")
        k = h.shape[0]
        b2 = s2.block(e, "H")
        np.testing.assert_array_equal(b2[:k, :k], h)
        np.testing.assert_array_equal(b2[k:, k:], 2 * h)
        assert not b2[:k, k:].any() and not b2[k:, :k].any()
        b8 = s8.block(e, "H")
        np.testing.assert_allclose(b8[:k, :k], (1 + 0.01j) * h, rtol=TOL.roundoff, atol=TOL.roundoff)
        np.testing.assert_allclose(b8[k:, k:], (2 + 0.02j) * h, rtol=TOL.roundoff, atol=TOL.roundoff)
        np.testing.assert_allclose(b8[:k, k:], (0.1 - 0.2j) * h, rtol=TOL.roundoff, atol=TOL.roundoff)
        np.testing.assert_allclose(b8[k:, :k], (0.1 - 0.2j) * h, rtol=TOL.roundoff, atol=TOL.roundoff)
        np.testing.assert_array_equal(s8.block(e, "S"), si.block(e, "S"))
    assert s2.spinful and s8.spinful


# --- the spin pre-check ---------------------------------------------------------------------------------------
def test_spinful_of_reads_only_the_header(raw, run_copy):
    """spinful_of agrees with read() on the real run and reads the first three records only."""
    src = SiestaSource(raw)
    (item,) = src.items()
    assert src.spinful_of(item) is False is src.read(item)[0].spinful
    hsx = run_copy / "Si.HSX"
    data = hsx.read_bytes()
    starts = _record_starts(data)
    hsx.write_bytes(data[:starts[3]])  # version, is_dp, dimensions: read() refuses the rest
    copy = SiestaSource(run_copy)
    assert copy.spinful_of(str(hsx)) is False and hsx_spin(hsx) == 1
    with pytest.raises(InputError, match="truncated"):
        copy.read(str(hsx))
    head = bytearray(data[:starts[3]])
    head[starts[2] + 4 + 8:starts[2] + 4 + 12] = struct.pack("<i", 4)
    hsx.write_bytes(bytes(head))
    assert copy.spinful_of(str(hsx)) is True
    head[starts[0] + 4:starts[0] + 8] = struct.pack("<i", 7)  # unknown version
    hsx.write_bytes(bytes(head))
    assert copy.spinful_of(str(hsx)) is None
    hsx.write_bytes(b"")
    assert copy.spinful_of(str(hsx)) is None


def test_edges_option(raw, si):
    """'hamiltonian' (default) keeps the whole HSX pattern, as today and as DeepH-dock; 'overlap' keeps the
    pairs with a non-zero overlap element, their blocks unchanged."""
    import dataclasses

    (f,) = [f for f in dataclasses.fields(SiestaSource.Options) if f.name == "edges"]
    assert f.default == "hamiltonian" and f.metadata["choices"] == ("overlap", "hamiltonian") and f.metadata["help"]
    src = SiestaSource(raw, edges="overlap")
    (ov,) = src.read(src.items()[0])
    (full,) = SiestaSource(raw).read(src.items()[0])
    np.testing.assert_array_equal(full.H, si.H)
    zero_s = {k for k, e in si.edge_index().items() if not si.block(e, "S").any()}
    assert si.nedges == 294 and len(zero_s) == 120 and ov.nedges == 294 - 120
    a = ov.edge_index()
    assert set(a) == set(si.edge_index()) - zero_s
    for key, e in a.items():
        np.testing.assert_array_equal(ov.block(e, "H"), si.block(si.edge_index()[key], "H"))
        np.testing.assert_array_equal(ov.block(e, "S"), si.block(si.edge_index()[key], "S"))
    ov.validate()
    with pytest.raises(InputError, match="edges must be 'overlap' or 'hamiltonian', got 'all'"):
        SiestaSource(raw, edges="all")
