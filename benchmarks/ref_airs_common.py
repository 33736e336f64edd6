"""The reference QHNet of divelab/AIRS (``OpenDFT/QHBench/QH9/models/ori_QHNet_with_bias.py``) run from a local
clone, for the AIRS fixture (``ref_airs_fixture.py``) and the loss-curve comparison (``ref_airs_losscurve.py``).

Nothing of AIRS is copied here: the module is imported from the clone given on the command line. What AIRS
needs and hambench's environment lacks is shimmed, in this script only:

* ``torch_cluster.radius_graph`` — every ordered pair of atoms of one molecule closer than ``r`` (QH9 passes
  ``max_num_neighbors = data.num_nodes``, so the graph is never truncated);
* ``torch_scatter.scatter`` / ``scatter_sum`` — sums by index (``index_add``);
* ``torch_geometric``'s batch object — a plain namespace holding what ``QHNet.forward`` reads (``atoms``
  (N, 1), ``pos`` (N, 3) Å, ``batch``, ``ptr``, ``edge_index_full`` in QH9's order: for each source atom i, every
  destination j ≠ i, column ``(j, i)`` — ``datasets.py::cut_matrix``).

Molecules are the shipped demo molecules (``hambench/data/demo_qm9``: QM9 geometries, B3LYP/def2-SVP Fock
matrices in Hartree, PySCF AO order), the same ones ``hambench prepare --source pyscf/qm9`` puts in the demo
store.
"""

from __future__ import annotations

import glob
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "hambench" / "data" / "demo_qm9"
QH9_DIR = Path("OpenDFT") / "QHBench" / "QH9"
_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

__all__ = ["load_airs", "airs_commit", "demo_molecules", "airs_batch", "qhnet_order", "orbital_slices",
           "full_from_blocks", "perturb_", "exact_bernstein_"]


# --- shims -------------------------------------------------------------------------------------------------
def _radius_graph(pos, r, batch=None, loop=False, max_num_neighbors=32, **_):
    batch = torch.zeros(pos.shape[0], dtype=torch.long) if batch is None else batch
    same = batch[:, None] == batch[None, :]
    close = (pos[:, None, :] - pos[None, :, :]).norm(dim=-1) < r
    keep = same & close & ~torch.eye(pos.shape[0], dtype=torch.bool)
    j, i = torch.nonzero(keep, as_tuple=True)
    return torch.stack([j, i])


def _scatter(src, index, dim=0, dim_size=None, reduce="sum", **_):
    if dim != 0 or reduce != "sum":
        raise NotImplementedError("shim: only scatter(..., dim=0, reduce='sum')")
    n = int(index.max()) + 1 if dim_size is None else int(dim_size)
    return torch.zeros((n,) + tuple(src.shape[1:]), dtype=src.dtype).index_add_(0, index, src)


def _install_shims() -> None:
    for name, attrs in {"torch_cluster": {"radius_graph": _radius_graph},
                        "torch_scatter": {"scatter": _scatter, "scatter_sum": _scatter}}.items():
        try:
            importlib.import_module(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod


def load_airs(root):
    """The module ``ori_QHNet_with_bias`` of the AIRS clone at ``root`` (shims installed first)."""
    path = Path(root) / QH9_DIR / "models" / "ori_QHNet_with_bias.py"
    if not path.is_file():
        raise SystemExit(f"{root}: not an AIRS clone (no {QH9_DIR / 'models' / 'ori_QHNet_with_bias.py'})")
    _install_shims()
    spec = importlib.util.spec_from_file_location("airs_ori_qhnet_with_bias", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def airs_commit(root, given: str | None = None) -> str:
    """The clone's commit (``git rev-parse HEAD``), or ``given``, or an ``AIRS_COMMIT`` file in the clone."""
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if out:
            return out
    except Exception:
        pass
    f = Path(root) / "AIRS_COMMIT"
    return f.read_text().strip() if f.is_file() else "unknown"


# --- molecules -----------------------------------------------------------------------------------------------
def demo_molecules(qm9_indices):
    """[(qm9 index, Z (N,), pos (N, 3) Å, Fock (n_ao, n_ao) Hartree in PySCF order)] of the demo molecules."""
    out = []
    for k in qm9_indices:
        (f,) = glob.glob(str(DEMO / f"dsgdb9nsd_{k:06d}_*.npz"))
        d = np.load(f, allow_pickle=False)
        Z = np.array([_Z[str(s)] for s in d["symbols"]], dtype=np.int64)
        out.append((k, Z, np.asarray(d["xyz_ang"], dtype=np.float64), np.asarray(d["fock"], dtype=np.float64)))
    return out


def qhnet_order(Z) -> np.ndarray:
    """Permutation PySCF def2-SVP AO order → QHNet order (p: x, y, z → y, z, x; qh9.md §2.2)."""
    idx, off = [], 0
    for z in Z:
        shells = [0, 0, 1] if z <= 2 else [0, 0, 0, 1, 1, 2]
        for l in shells:
            idx += [off + p for p in ([1, 2, 0] if l == 1 else range(2 * l + 1))]
            off += 2 * l + 1
    return np.array(idx)


def orbital_slices(Z) -> list[np.ndarray]:
    """Each atom's slots among AIRS' 14 (QH9's orbital mask: H → 1s, 2s, 2p; heavier → all 14)."""
    return [np.array([0, 1, 3, 4, 5]) if z <= 2 else np.arange(14) for z in Z]


def airs_batch(mols, dtype=torch.float64):
    """What ``QHNet.forward`` reads for the molecules ``mols`` (a torch_geometric batch stand-in)."""
    atoms, pos, batch, ptr, full = [], [], [], [0], []
    for g, (_, Z, p, _) in enumerate(mols):
        n, base = len(Z), ptr[-1]
        atoms.append(torch.as_tensor(Z).view(-1, 1))
        pos.append(torch.as_tensor(p, dtype=dtype))
        batch.append(torch.full((n,), g, dtype=torch.long))
        full += [[base + j, base + i] for i in range(n) for j in range(n) if j != i]
        ptr.append(base + n)
    data = types.SimpleNamespace(atoms=torch.cat(atoms), pos=torch.cat(pos), batch=torch.cat(batch),
                                 ptr=torch.tensor(ptr), edge_index_full=torch.tensor(full).T.contiguous())
    data.num_nodes = int(data.atoms.shape[0])
    return data


def full_from_blocks(mols, diag, nondiag) -> list[np.ndarray]:
    """AIRS' output blocks (``hamiltonian_diagonal_blocks`` (N, 14, 14), ``…_non_diagonal_blocks`` (E, 14, 14))
    assembled into each molecule's full matrix in QHNet order (= hambench order), as ``build_final_matrix``."""
    diag, nondiag = diag.detach().numpy(), nondiag.detach().numpy()
    out, a0, e0 = [], 0, 0
    for _, Z, _, _ in mols:
        n = len(Z)
        sl = orbital_slices(Z)
        off = np.concatenate([[0], np.cumsum([len(s) for s in sl])])
        H = np.zeros((off[-1], off[-1]))
        e = e0
        for i in range(n):  # QH9's edge order: source i outer, destination j inner, block rows = j
            H[off[i]:off[i + 1], off[i]:off[i + 1]] = diag[a0 + i][np.ix_(sl[i], sl[i])]
            for j in range(n):
                if j != i:
                    H[off[j]:off[j + 1], off[i]:off[i + 1]] = nondiag[e][np.ix_(sl[j], sl[i])]
                    e += 1
        out.append(H)
        a0, e0 = a0 + n, e
    return out


# --- weights -------------------------------------------------------------------------------------------------
def perturb_(model, seed: int, scale: float = 0.1) -> None:
    """Add seeded noise to every parameter (e3nn's zero-initialised biases become non-zero, so a mapping that
    drops or swaps a bias is seen), then round every parameter to float32: the float32 file AIRS writes holds
    exactly the weights the float64 reference runs with."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
            p.copy_(p.float().to(p.dtype))


def exact_bernstein_(model) -> None:
    """AIRS keeps the Bernstein log-binomials as float32 buffers (a 1e-7 relative error in float64); the float64
    reference gets their exact values, so it computes the function AIRS means to the last bit."""
    de = model.distance_expansion
    K = de.logc.shape[0]
    logc = [np.sum(np.log(np.arange(2, K))) - np.sum(np.log(np.arange(2, v + 1))) - np.sum(np.log(np.arange(2, K - v)))
            for v in range(K)]
    de.logc = torch.tensor(logc, dtype=torch.float64)
