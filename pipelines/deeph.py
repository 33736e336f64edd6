"""DeepH sources: any directory of DeepH folders (legacy and DeepH-dock layouts) and the six named data sets
of the DeepH-E3 / TraceGrad / HarmoSE benchmarks.

Folder formats themselves are read by :mod:`hambench.pipelines.deeph_format`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hambench.basis._conventions import parse_openmx_basis, symbol_to_z
from hambench.store._meta import StoreAttrs
from hambench.errors import InputError
from . import Source, find_files
from .deeph_format import detect_layout, read_legacy_folder, read_new_folder

__all__ = ["DeepHFolderSource", "DATASETS", "DeepHDataset", "named_dataset", "find_deeph_folders"]

_MARKERS = {"legacy": "hamiltonians.h5", "new": "hamiltonian.h5"}


def read_export_index(root: Path) -> dict:
    """``export.json`` of a ``hambench export`` folder: folder name → {id, parent_id, rotation}; {} without one."""
    path = Path(root) / "export.json"
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text())["structures"]
        by_index = {int(e["index"]): e for e in index}
        out = {}
        for e in index:
            parent = e.get("parent")
            out[str(e["folder"])] = {
                "id": str(e["id"]),
                "parent_id": str(by_index[int(parent)]["id"]) if parent is not None and int(parent) in by_index
                else None,
                "rotation": e.get("rotation"),
            }
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"not a hambench export index ({type(e).__name__}: {e})") from None
    return out


def find_deeph_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` included) holding a DeepH Hamiltonian file, sorted."""
    root = Path(root)
    if not root.exists():
        raise InputError(root, "no such file or directory")
    if not root.is_dir():
        raise InputError(root, "expected a DeepH folder or a directory of DeepH folders, got a file")
    if any((root / m).exists() for m in _MARKERS.values()):
        return [root]
    names = set(_MARKERS.values())
    found = {p.parent for p in find_files(root, names.__contains__)}
    return sorted(found, key=lambda p: str(p.relative_to(root)))


class DeepHFolderSource(Source):
    """DeepH processed folders (legacy: hamiltonians.h5 in OpenMX order; DeepH-dock: hamiltonian.h5)."""

    name = "deeph/folder"
    doc = "directory of DeepH processed folders (legacy DeepH-pack/DeepH-E3 layout or DeepH-dock layout)"

    Options = Source.Options

    def __init__(self, input_path=None, source_name: str | None = None, dataset: DeepHDataset | None = None,
                 **options):
        super().__init__(input_path, **options)
        if input_path is None:
            raise InputError(None, f"--source {source_name or self.name} needs --input DIR (a DeepH folder or a "
                                   "directory of them)")
        self.root = Path(input_path)
        self.dataset = dataset
        self.seed = self.opts.seed
        self._folders = find_deeph_folders(self.root)
        self._export = read_export_index(self.root)
        self._splits = dataset.assign_splits(self._folders, self.seed) if dataset else {}

    def items(self) -> list[str]:
        return [str(p) for p in self._folders]

    def read(self, item) -> list:
        folder = Path(item)
        layout = detect_layout(folder)
        s = read_legacy_folder(folder) if layout == "legacy" else read_new_folder(folder)
        s.id = str(folder.relative_to(self.root)) if folder != self.root else folder.name
        entry = self._export.get(s.id)
        if entry is not None:  # a `hambench export` folder: the store's own id, parent and rotation come back
            s.id = entry["id"]
            if entry.get("parent_id") is not None:
                s.parent_id = entry["parent_id"]  # resolved to the new store's index when it is assembled
                s.rotation = np.asarray(entry["rotation"], dtype=np.float64)
        if self.dataset:
            self.dataset.check(s, folder)
            s.splits = {f"deeph-{self.dataset.key}": self._splits[str(folder)]}
        return [s]

    def spinful_of(self, item) -> bool | None:
        """Spinful per the folder's info.json (legacy ``isspinful``, DeepH-dock ``spinful``; absent key: False, as
        the readers take it); None without a readable info.json (a legacy folder then decides from its blocks)."""
        folder = Path(item)
        try:
            info = json.loads((folder / "info.json").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict):
            return None
        key = "isspinful" if (folder / _MARKERS["legacy"]).exists() else "spinful"
        return bool(info.get(key, False))

    def attrs(self) -> StoreAttrs:
        dft = {"code": "OpenMX", "version": "3.9", "functional": "GGA-PBE", "via": "DeepH folders"}
        if self.dataset:
            dft.update(basis={el: b for el, b in self.dataset.basis.items()}, dataset=self.dataset.title,
                       doi=self.dataset.doi)
        else:
            dft = {"code": "unknown (DeepH folders)", "via": "DeepH folders"}
        return StoreAttrs.from_dict({"kind": "crystal", "dft": dft, "constants": "as in the input files (eV, Å)"})


@dataclass(frozen=True)
class DeepHDataset:
    """One of the six DeepH benchmark data sets (FACTS.md §4; research/deeph.md §3.2)."""

    key: str
    title: str
    elements: tuple[str, ...]
    basis: dict
    atoms: int
    split: tuple[int, int, int]
    twisted: int
    spinful: bool
    doi: str
    download: str

    def check(self, s, folder: Path) -> None:
        for el, spec in self.basis.items():
            z = symbol_to_z(el)
            if z in s.species and s.species[z] != parse_openmx_basis(spec):
                raise InputError(folder, f"{el} has shells {s.species[z]}, the {self.key} data set uses {spec}")
        extra = {int(z) for z in s.species} - {symbol_to_z(e) for e in self.elements}
        if extra:
            raise InputError(folder, f"elements {sorted(extra)} are not part of the {self.key} data set")
        if s.spinful != self.spinful:
            raise InputError(folder, f"spinful={s.spinful}, the {self.key} data set is spinful={self.spinful}")

    def assign_splits(self, folders: list[Path], seed: int) -> dict[str, str]:
        """train/val/test of the paper's sizes on the regular structures; twisted cells → ``test_twisted``.

        A structure is *twisted* when its folder name says so or its atom count differs from the data set's
        regular supercell. The regular ones are shuffled with ``seed``; when fewer than the paper's total are
        present, the three sizes are scaled proportionally.
        """
        regular, twisted = [], []
        for f in folders:
            n = _count_atoms(f)
            (twisted if ("twist" in str(f).lower() or n != self.atoms) else regular).append(str(f))
        ntr, nva, nte = self.split
        total = ntr + nva + nte
        if len(regular) != total:
            scale = len(regular) / total
            ntr, nva = int(round(ntr * scale)), int(round(nva * scale))
        order = np.random.default_rng(seed).permutation(len(regular))
        out = {}
        for rank, idx in enumerate(order):
            out[regular[idx]] = "train" if rank < ntr else "val" if rank < ntr + nva else "test"
        out.update({t: "test_twisted" for t in twisted})
        return out


def _count_atoms(folder: Path) -> int:
    el = folder / "element.dat"
    if el.exists():
        return len(el.read_text().split())
    info = folder / "info.json"
    if info.exists():
        return int(json.loads(info.read_text()).get("atoms_quantity", -1))
    return -1


_E3 = "DeepH-E3 data (Gong et al., Nat. Commun. 14, 2848 (2023))"
DATASETS: dict[str, DeepHDataset] = {
    "graphene": DeepHDataset("graphene", "MG monolayer graphene, 300 K MD", ("C",), {"C": "C6.0-s2p2d1"}, 72,
                             (270, 90, 90), 0, False, "10.5281/zenodo.6555484",
                             "https://zenodo.org/record/6555484 (graphene_dataset.zip; DeepH-pack's graphene set)"),
    "mos2": DeepHDataset("mos2", "MM monolayer MoS2, 300 K MD", ("Mo", "S"),
                         {"Mo": "Mo7.0-s3p2d2", "S": "S7.0-s2p2d1"}, 75, (300, 100, 100), 0, False,
                         "10.5281/zenodo.6555484", "https://zenodo.org/record/6555484 (MoS2_dataset.zip)"),
    "bilayer_graphene": DeepHDataset("bilayer_graphene", "BG bilayer graphene (+9 twisted test cells)", ("C",),
                                     {"C": "C6.0-s2p2d1"}, 64, (180, 60, 60), 9, False, "10.5281/zenodo.7553640",
                                     f"https://doi.org/10.5281/zenodo.7553640 (Bilayer_graphene_dataset.zip; {_E3})"),
    "bilayer_bismuthene": DeepHDataset("bilayer_bismuthene", "BB bilayer bismuthene, SOC (+4 twisted)", ("Bi",),
                                       {"Bi": "Bi8.0-s3p2d2"}, 36, (231, 113, 113), 4, True, "10.5281/zenodo.7553640",
                                       f"https://doi.org/10.5281/zenodo.7553640 ({_E3})"),
    "bilayer_bi2te3": DeepHDataset("bilayer_bi2te3", "BT bilayer Bi2Te3, SOC (+2 twisted)", ("Bi", "Te"),
                                   {"Bi": "Bi8.0-s3p2d2", "Te": "Te7.0-s3p2d2"}, 90, (204, 38, 12), 2, True,
                                   "10.5281/zenodo.7553843", f"https://doi.org/10.5281/zenodo.7553843 ({_E3})"),
    "bilayer_bi2se3": DeepHDataset("bilayer_bi2se3", "BS bilayer Bi2Se3, SOC (+2 twisted)", ("Bi", "Se"),
                                   {"Bi": "Bi8.0-s3p2d2", "Se": "Se7.0-s3p2d1"}, 90, (231, 113, 113), 2, True,
                                   "10.5281/zenodo.7553827",
                                   f"https://doi.org/10.5281/zenodo.7553827 (45.6 GB, Bi2Se3_dataset*.zip; {_E3})"),
}


def named_dataset(input_path=None, source_name: str = "", **options) -> DeepHFolderSource:
    """``deeph/<name>``: one of the six DeepH benchmark sets, read from a local copy (``--input``)."""
    key = source_name.split("/", 1)[-1]
    ds = DATASETS[key]
    if input_path is None:
        raise InputError(
            None,
            f"the {ds.title} data cannot be downloaded by hambench: get it from {ds.download}, unzip it, and run "
            f"`hambench prepare --source deeph/{key} --input <unzipped folder> -o {key}.zarr`",
        )
    return DeepHFolderSource(input_path, source_name=source_name, dataset=ds, **options)


named_dataset.Options = DeepHFolderSource.Options
named_dataset.doc = ""
