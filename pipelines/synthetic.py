"""``synthetic/random``: random periodic cells with random Hermitian-paired blocks.

Not physics — a fast, seeded, exactly reproducible input for tests and benchmarks of the store and the driver
(resume, worker independence, sharding) at any size. Options: ``count`` structures, ``seed``, ``cutoff``
(edges, Å, default 4), ``spinful``, ``delay`` (seconds of sleep per structure, to test interruption).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from hambench import _core
from hambench.store._meta import StoreAttrs
from hambench.errors import InputError
from hambench.store._structure import Structure
from . import Source

__all__ = ["SyntheticSource", "random_structure"]

#: two species with different shells (H: s s p; C: s s p p d)
SPECIES = {1: [0, 0, 1], 6: [0, 0, 1, 1, 2]}


def random_structure(rng: np.random.Generator, natoms: int = 8, cutoff: float = 4.0, spinful: bool = False,
                     name: str = "random") -> Structure:
    """A random triclinic cell with random blocks satisfying H_ji(−R) = H_ij(R)ᴴ exactly."""
    cell = np.diag(rng.uniform(4.0, 6.0, 3)) + rng.uniform(-0.8, 0.8, (3, 3))
    frac = rng.uniform(0, 1, (natoms, 3))
    pos = frac @ cell
    Z = rng.choice(list(SPECIES), natoms)
    src, dst, shift = _core.neighbor_list(pos, cell, (True, True, True), cutoff)
    s = Structure(id=name, Z=Z, pos=pos, cell=cell, pbc=[True] * 3, src=src, dst=dst, shift=shift,
                  H=np.zeros(0), S=None, species={int(z): SPECIES[int(z)] for z in np.unique(Z)}, spinful=spinful)
    hp, sp = s.block_ptr(), s.block_ptr(False)
    hi, hj = s.block_shapes()
    si, sj = s.block_shapes(False)
    H = np.zeros(int(hp[-1]), np.complex128 if spinful else np.float64)
    S = np.zeros(int(sp[-1]))
    index = s.edge_index()
    for e, (i, j, r) in enumerate(zip(src, dst, shift)):
        f = index[(int(j), int(i), *(-int(x) for x in r))]
        if f < e:
            continue
        h = rng.normal(size=(hi[e], hj[e]))
        if spinful:
            h = h + 1j * rng.normal(size=(hi[e], hj[e]))
        o = rng.normal(size=(si[e], sj[e])) * 0.1
        if e == f:  # on-site block of the home cell: Hermitian itself
            h = (h + h.conj().T) / 2
            o = (o + o.T) / 2 + np.eye(si[e])
        H[hp[e] : hp[e + 1]] = h.ravel()
        S[sp[e] : sp[e + 1]] = o.ravel()
        H[hp[f] : hp[f + 1]] = h.conj().T.ravel()
        S[sp[f] : sp[f + 1]] = o.T.ravel()
    s.H, s.S = H, S
    s.energy = float(rng.normal())
    s.fermi_level = float(rng.normal())
    return s


class SyntheticSource(Source):
    """Random cells with random Hermitian-paired blocks (tests and benchmarks of the store/driver)."""

    name = "synthetic/random"
    doc = "random cells with random Hermitian-paired blocks, for tests and benchmarks (--count N)"

    @dataclasses.dataclass(frozen=True)
    class Options(Source.Options):
        count: int = dataclasses.field(default=8, metadata={"help": "number of random structures (default 8).",
                                                            "min": 1})
        spinful: bool = dataclasses.field(default=False, metadata={"help": "complex spinor blocks (spin-outer)."})
        natoms: int = dataclasses.field(default=8, metadata={"help": "atoms per random cell (default 8).", "min": 1})
        edge_cutoff: float = dataclasses.field(default=4.0, metadata={
            "help": "radius of the random structures' own pair list (Å, default 4); --cutoff then restricts it."})
        delay: float = dataclasses.field(default=0.0, metadata={
            "help": "seconds of sleep per structure (to test interruption and resume).", "min": 0.0})

    def __init__(self, input_path=None, source_name=None, **options):
        super().__init__(input_path, **options)
        o = self.opts
        if int(o.count) < 1:
            raise InputError(None, f"--count must be >= 1, got {o.count}")
        if int(o.natoms) < 1:
            raise InputError(None, f"--natoms must be >= 1, got {o.natoms}")
        if not float(o.edge_cutoff) > 0 or float(o.delay) < 0:
            raise InputError(None, f"--edge-cutoff must be > 0 and --delay >= 0, got {o.edge_cutoff} and {o.delay}")

    def items(self) -> list[int]:
        return list(range(int(self.opts.count)))

    def read(self, item) -> list[Structure]:
        o = self.opts
        if o.delay:
            time.sleep(float(o.delay))
        rng = np.random.default_rng([int(o.seed), int(item)])
        s = random_structure(rng, int(o.natoms), float(o.edge_cutoff), bool(o.spinful), name=f"random-{item:06d}")
        s.splits = {"random": ("train", "val", "test")[int(item) % 3]}
        return [s]

    def attrs(self) -> StoreAttrs:
        return StoreAttrs.from_dict({"kind": "crystal", "dft": {"code": "none (synthetic random blocks)"},
                                     "constants": "none"})
