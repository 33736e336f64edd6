"""Exact overlap blocks of a Gaussian basis, edge by edge, without DFT and without a whole-cell matrix.

For a structure predicted without DFT (``hambench predict --structures``) the bands need S(R) as well as H(R).
With a Gaussian basis (PySCF: def2-SVP, gth-szv, gth-dzvp, …) S is a two-centre integral that depends on the two
elements and their displacement only:

    S_ij(R) = ⟨φ_i(r − r_i) | φ_j(r − r_j − R·cell)⟩ = ⟨φ_a(r) | φ_b(r − d)⟩,   d = r_j + R·cell − r_i,

so each edge's block is one libcint call on atom a at the origin and atom b at d. :func:`gaussian_overlap_blocks`
groups the edges by element pair and hands libcint one "molecule" of up to ``chunk`` displaced copies of atom b
per call (its ``atm``/``bas``/``env`` tables built with NumPy, not by ``Mole.build``), so 10⁶ edges cost one
integral per edge and no Python per edge. Memory: the flat S (what the store holds) plus one chunk.

Numerical atomic orbitals (OpenMX, ABACUS, SIESTA) have no closed form here: their S needs the code's radial
tables (HPRO's projection, or a model trained on S with the same machinery as H); :func:`gaussian_basis` refuses
such a store's basis in one line.
"""

from __future__ import annotations

import warnings

import numpy as np

from hambench.basis._conventions import atom_permutation, z_to_symbol
from hambench.errors import InputError

__all__ = ["gaussian_basis", "gaussian_overlap_blocks", "dft_gaussian_basis"]


def gaussian_basis(symbol: str, name: str):
    """PySCF's basis ``name`` for one element (molecular sets, then the periodic GTH sets, then ``-molopt-sr``,
    as the ``pyscf/crystal`` source picks them); :class:`InputError` when none has the element."""
    from pyscf import gto
    from pyscf.pbc import gto as pgto

    for loader in (gto.basis.load, pgto.basis.load):
        for b in (name, name + "-molopt-sr"):
            try:
                with warnings.catch_warnings():  # "may be available in basis-set-exchange": try the next one
                    warnings.simplefilter("ignore")
                    basis = loader(b, symbol)
            except Exception:  # BasisNotFoundError, KeyError, RuntimeError, depending on the loader
                continue
            if basis:
                return basis
    raise InputError("--basis", f"Gaussian basis {name!r} has no functions for {symbol} (PySCF knows no such set)")


def dft_gaussian_basis(dft: dict | None) -> str | None:
    """The PySCF basis name of a store's ``dft`` attributes when its orbitals are Gaussians (code PySCF), else
    None (OpenMX, ABACUS, SIESTA: numerical orbitals)."""
    dft = dict(dft or {})
    if str(dft.get("code", "")).lower() != "pyscf" or not dft.get("basis"):
        return None
    return str(dft["basis"])


def _atom_tables(symbol: str, basis):
    """(atm, bas, env, nao, shells) of one atom of ``symbol`` at the origin, normalised by PySCF."""
    from pyscf import gto

    z = gto.charge(symbol)
    mol = gto.M(atom=[(symbol, (0.0, 0.0, 0.0))], basis={symbol: basis}, unit="Bohr", spin=z % 2, verbose=0)
    shells = [int(mol.bas_angular(b)) for b in range(mol.nbas) for _ in range(int(mol.bas_nctr(b)))]
    return mol._atm.copy(), mol._bas.copy(), mol._env.copy(), int(mol.nao), shells


def _copies(atm, bas, env, disp_bohr):
    """The tables of len(disp) copies of a one-atom molecule, copy k displaced by disp[k] (Bohr)."""
    from pyscf.gto import mole

    n = len(disp_bohr)
    start = len(env)
    env_n = np.concatenate([env, np.asarray(disp_bohr, np.float64).reshape(-1)])
    atm_n = np.repeat(atm, n, axis=0)
    atm_n[:, mole.PTR_COORD] = start + 3 * np.arange(n)
    bas_n = np.tile(bas, (n, 1))
    bas_n[:, mole.ATOM_OF] = np.repeat(np.arange(n), len(bas))
    return atm_n.astype(np.int32), bas_n.astype(np.int32), env_n


def _pair_overlaps(ta, tb, disp_bohr) -> np.ndarray:
    """(n, nao_a, nao_b) overlaps ⟨a at 0 | b at disp[k]⟩ in PySCF order (spherical AOs)."""
    from pyscf.gto import mole, moleintor

    atm_a, bas_a, env_a, nao_a, _ = ta
    atm_b, bas_b, env_b = _copies(*tb[:3], disp_bohr)
    atm, bas, env = mole.conc_env(atm_a, bas_a, env_a, atm_b, bas_b, env_b)
    na = len(bas_a)
    s = moleintor.getints("int1e_ovlp_sph", atm, bas, env, shls_slice=(0, na, na, len(bas)), hermi=0)
    return s.reshape(nao_a, len(disp_bohr), tb[3]).transpose(1, 0, 2)


def gaussian_overlap_blocks(Z, pos, cell, src, dst, shift, layout, basis: str, chunk: int = 4096,
                            progress=None) -> np.ndarray:
    """Flat S of every edge (i, j, R) in hambench order (row-major (n_i, n_j) blocks, ``layout.block_ptr(Z[src],
    Z[dst], spinful=False)`` offsets), from the Gaussian basis ``basis`` (a PySCF name).

    Parameters
    ----------
    Z : (N,) atomic numbers; pos : (N, 3) Å; cell : (3, 3) Å, rows are lattice vectors (ignored when every
        shift is 0); src, dst : (E,) atom indices; shift : (E, 3) integer lattice vectors R.
    layout : the model's :class:`~hambench.basis.BasisLayout`: its shells per element must be the basis' shells
        (else :class:`InputError`: the model was trained on another basis).
    chunk : displaced atoms per libcint call (memory ~ chunk · nao_a · nao_b · 8 bytes).
    progress : optional callable(done_edges, total_edges).
    """
    Z = np.asarray(Z, np.int64)
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    shift = np.asarray(shift, np.float64).reshape(-1, 3)
    d = np.asarray(pos, np.float64)[dst] - np.asarray(pos, np.float64)[src]
    if shift.any():
        d = d + shift @ np.asarray(cell, np.float64)
    # PySCF's own Bohr (CODATA 2010, 2e-11 relative from hambench's CODATA 2018): the Å geometry means what it
    # meant to PySCF when a pyscf/crystal store's S was made, so the two agree to rounding
    from pyscf.data.nist import BOHR

    d /= BOHR
    tables, perm = {}, {}
    for z in np.unique(Z):
        sym = z_to_symbol(int(z))
        t = _atom_tables(sym, gaussian_basis(sym, basis))
        want = list(layout.species.get(int(z), []))
        if t[4] != want:
            raise InputError("--basis", f"basis {basis!r} gives {sym} the shells {t[4]}, the model's layout has "
                                        f"{want}: it was trained on another basis")
        tables[int(z)] = t
        p, sign = atom_permutation("pyscf", t[4])
        if np.any(np.asarray(sign) != 1):  # pragma: no cover - the PySCF table has no signs
            raise AssertionError("PySCF order table has a sign")
        perm[int(z)] = np.asarray(p)
    ptr = layout.block_ptr(Z[src], Z[dst], spinful=False)
    out = np.empty(int(ptr[-1]), np.float64)
    zs, zd = Z[src], Z[dst]
    done = 0
    for za in np.unique(zs):
        for zb in np.unique(zd[zs == za]):
            idx = np.flatnonzero((zs == za) & (zd == zb))
            na, nb = tables[int(za)][3], tables[int(zb)][3]
            pa, pb = perm[int(za)], perm[int(zb)]
            # the flat positions of every element of every block of the group: ptr[e] + row-major offset
            local = np.arange(na * nb)
            for a in range(0, len(idx), chunk):
                e = idx[a:a + chunk]
                s = _pair_overlaps(tables[int(za)], tables[int(zb)], d[e])[:, pa][:, :, pb]
                out[(ptr[e][:, None] + local[None, :]).reshape(-1)] = s.reshape(-1)
                done += len(e)
                if progress is not None:
                    progress(done, len(src))
    return out
