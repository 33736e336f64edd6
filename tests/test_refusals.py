"""Every refusal is one clear line (issue 30 item 2): the inputs a user can get wrong after ``prepare`` — option
values, output paths, configs given as files or ``--set`` flags, degenerate geometries, the wrong truth store —
each end in exactly one ``hambench: error:`` line on stderr naming the flag or file given, a non-zero exit (1 bad
input, 2 usage) and nothing written: no run folder, no partial output.

The checkpoints are the engine's ``toy`` model (tests/_toy_model.py), trained for one step on the embedded demo
molecules (real PySCF labels) and on synthetic crystals; what is refused does not depend on the model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hambench.app.testing import cli
from hambench.pipelines import prepare
from hambench.store import CACHE_FILE

from _toy_model import register_toy


@pytest.fixture(scope="module", autouse=True)
def toy(tmp_path_factory):
    from hambench.models import registry

    yield register_toy(tmp_path_factory.mktemp("toy"))
    registry._REGISTRY.pop("toy", None)  # tests only: leave the registry as the package has it


def _train(store, out):
    r = cli("train", "toy", "--data", store, "-o", out, "--max-steps", 1)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def mol_run(demo_store, tmp_path_factory):
    return _train(demo_store, tmp_path_factory.mktemp("mol") / "run")


@pytest.fixture(scope="module")
def crystals(tmp_path_factory):
    out = tmp_path_factory.mktemp("cry") / "cry.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=3, seed=4, natoms=3)
    return out


@pytest.fixture(scope="module")
def cry_run(crystals, tmp_path_factory):
    return _train(crystals, tmp_path_factory.mktemp("cry") / "run")


@pytest.fixture(scope="module")
def preds(demo_store, mol_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("preds") / "preds.zarr"
    assert cli("predict", mol_run, "--data", demo_store, "-o", out).exit_code == 0
    return out


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if CACHE_FILE not in p.name}


def refused(args, folder: Path, *names, code: int = 1) -> str:
    """Run ``hambench ARGS``; assert exit ``code``, exactly one ``hambench: error:`` line on stderr naming each of
    ``names`` and no "internal error", and nothing new under ``folder``. The line."""
    before = tree(folder)
    r = cli(*args)
    assert r.exit_code == code, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("hambench: error:"), r.stderr
    assert "internal error" not in lines[0]
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert tree(folder) == before, sorted(tree(folder) ^ before)
    return lines[0]


# --- option values: usage errors, one line, exit 2 -------------------------------------------------------------
USAGE = [  # (id, command builder, the flag named)
    ("train-max-steps-0", lambda d, run, t: ["train", "toy", "--data", d, "-o", t / "r", "--max-steps", 0], "--max-steps"),
    ("train-max-epochs-0", lambda d, run, t: ["train", "toy", "--data", d, "-o", t / "r", "--max-epochs", 0],
     "--max-epochs"),
    ("train-threads-0", lambda d, run, t: ["train", "toy", "--data", d, "-o", t / "r", "--threads", 0], "--threads"),
    ("train-both-stops", lambda d, run, t: ["train", "toy", "--data", d, "-o", t / "r", "--max-steps", 1,
                                            "--max-epochs", 1], "--max-steps"),
    ("train-no-output", lambda d, run, t: ["train", "toy", "--data", d], "--output"),
    ("predict-batch-0", lambda d, run, t: ["predict", run, "--data", d, "-o", t / "p.zarr", "--batch-size", 0],
     "--batch-size"),
    ("predict-both-inputs", lambda d, run, t: ["predict", run, "--data", d, "--structures", d, "-o", t / "p.zarr"],
     "--structures"),
    ("equivariance-n-0", lambda d, run, t: ["equivariance", run, "--data", d, "-n", 0], "--structures"),
    ("equivariance-rotations-0", lambda d, run, t: ["equivariance", run, "--data", d, "--rotations", 0],
     "--rotations"),
    ("score-workers-0", lambda d, run, t: ["score", d, "--workers", 0], "--workers"),
    ("score-scf-0", lambda d, run, t: ["score", d, "--scf", 0], "--scf"),
    ("info-verify-json", lambda d, run, t: ["info", d, "--verify", "--json"], "--verify"),
    ("unknown-command", lambda d, run, t: ["nope"], "nope"),
]


@pytest.mark.parametrize("case, args, flag", USAGE, ids=[u[0] for u in USAGE])
def test_bad_option_values_are_one_usage_line(demo_store, mol_run, tmp_path, case, args, flag):
    refused(args(demo_store, mol_run, tmp_path), tmp_path, flag, code=2)


# --- output paths that cannot be written -----------------------------------------------------------------------
def _file(t: Path) -> Path:
    f = t / "afile"
    f.write_text("not a folder\n")
    return f


def _folder(t: Path) -> Path:
    d = t / "afolder"
    d.mkdir()
    return d


OUTPUTS = [  # (id, command builder given (store, run, preds, tmp), what is named)
    ("train-o-file", lambda d, run, p, t: ["train", "toy", "--data", d, "-o", _file(t), "--max-steps", 1], "-o"),
    ("train-o-under-file", lambda d, run, p, t: ["train", "toy", "--data", d, "-o", _file(t) / "run",
                                                 "--max-steps", 1], "is a file, not a folder"),
    ("predict-o-file", lambda d, run, p, t: ["predict", run, "--data", d, "-o", _file(t), "--overwrite"], "-o"),
    ("score-o-folder", lambda d, run, p, t: ["score", p, "-o", _folder(t)], "-o: is a folder"),
    ("score-o-under-file", lambda d, run, p, t: ["score", p, "-o", _file(t) / "scores.json"], "is a file"),
    ("score-plots-file", lambda d, run, p, t: ["score", p, "--plots", _file(t)], "--plots"),
    ("equivariance-o-folder", lambda d, run, p, t: ["equivariance", run, "--data", d, "-o", _folder(t)],
     "-o: is a folder"),
    ("export-o-file", lambda d, run, p, t: ["export", d, "-o", _file(t)], "-o: is a file"),
]


@pytest.mark.parametrize("case, args, named", OUTPUTS, ids=[o[0] for o in OUTPUTS])
def test_unwritable_outputs_are_refused_before_any_work(demo_store, mol_run, preds, tmp_path, case, args, named):
    argv = args(demo_store, mol_run, preds, tmp_path)  # makes the file/folder in the way first
    refused(argv, tmp_path, named)


def test_existing_run_and_predictions_are_not_overwritten(demo_store, mol_run, preds, tmp_path):
    refused(["train", "toy", "--data", demo_store, "-o", mol_run, "--max-steps", 1], mol_run.parent, mol_run,
            "holds a run already")
    refused(["predict", mol_run, "--data", demo_store, "-o", preds], preds.parent, preds, "exists already")


# --- configs: the layer that brought a bad value is named --------------------------------------------------------
CONFIGS = [  # (id, extra train arguments, what the line names)
    ("set-not-a-number", ["--set", "train.lr=abc"], "--set train.lr=abc"),
    ("set-unknown-key", ["--set", "train.nope=1"], "--set train.nope=1"),
    ("set-zero-steps", ["--set", "train.max_steps=0"], "--set train.max_steps=0"),
    ("set-negative-decay", ["--set", "train.weight_decay=-1"], "--set train.weight_decay=-1"),
    ("set-betas", ["--set", "train.betas=[2, 3]"], "betas must each be in [0, 1)"),
    ("set-workers", ["--set", "train.num_workers=-1"], "--set train.num_workers=-1"),
    ("set-not-key-value", ["--set", "train.lr"], "--set"),
    ("second-set-to-blame", ["--set", "train.lr=0.1", "--set", "train.log_every=0"], "--set train.log_every=0"),
    ("unknown-preset", ["--preset", "huge"], "--preset huge"),
    ("device", ["--device", "banana"], "--device banana"),
    ("split", ["--split", "nope"], "train.split nope"),
]


@pytest.mark.parametrize("case, extra, named", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_config_errors_name_the_flag(demo_store, tmp_path, case, extra, named):
    line = refused(["train", "toy", "--data", demo_store, "-o", tmp_path / "run", *extra], tmp_path, named)
    assert "toy.yaml:" not in line  # never blamed on the shipped config file


def test_config_file_errors_name_the_file(demo_store, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: -2}\n")
    refused(["train", "toy", "--data", demo_store, "-o", tmp_path / "run", "--config", bad], tmp_path, bad,
            "lr must be positive")
    bad.write_text("train: {lr: [1\n")
    refused(["train", "toy", "--data", demo_store, "-o", tmp_path / "run", "--config", bad], tmp_path, bad,
            "not valid YAML")


# --- degenerate geometries: refused before any output exists -----------------------------------------------------
WATER = [("O", (0.0, 0.0, 0.0)), ("H", (0.96, 0.0, 0.0)), ("H", (-0.24, 0.93, 0.0))]


def _xyz(path: Path, atoms) -> Path:
    path.write_text(f"{len(atoms)}\nframe\n" + "".join(f"{el} {x} {y} {z}\n" for el, (x, y, z) in atoms))
    return path


MOLECULES = [  # (id, atoms, words)
    ("nan-coordinate", [WATER[0], ("H", (0.96, 0.0, float("nan"))), WATER[2]], "atom 1 (H) has a NaN or infinite"),
    ("inf-coordinate", [WATER[0], WATER[1], ("H", (float("inf"), 0.0, 0.0))], "atom 2 (H) has a NaN or infinite"),
    ("same-point", [WATER[0], ("H", (0.0, 0.0, 0.0)), WATER[2]], "atom 0 (O) and atom 1 (H) are 0 Å apart"),
    ("too-close", [WATER[0], WATER[1], ("H", (0.96, 0.05, 0.0))], "closer than 0.1 Å"),
    ("isolated-atom", [WATER[0], WATER[1], ("H", (40.0, 0.0, 0.0))], "atom 2 (H) has no neighbour"),
]


@pytest.mark.parametrize("case, atoms, words", MOLECULES, ids=[m[0] for m in MOLECULES])
def test_degenerate_molecules_are_refused(mol_run, tmp_path, case, atoms, words):
    f = _xyz(tmp_path / "mol.xyz", atoms)
    refused(["predict", mol_run, "--structures", f, "-o", tmp_path / "p.zarr"], tmp_path, f, "frame 0", words)


def test_sound_molecule_is_predicted(mol_run, tmp_path):
    f = _xyz(tmp_path / "water.xyz", WATER)
    r = cli("predict", mol_run, "--structures", f, "-o", tmp_path / "p.zarr")
    assert r.exit_code == 0, r.output
    assert "ok" in cli("info", "--verify", tmp_path / "p.zarr").output


def _poscar(path: Path, cell: float, atoms) -> Path:
    import ase
    import ase.io

    at = ase.Atoms([el for el, _ in atoms], positions=[p for _, p in atoms], cell=np.eye(3) * cell, pbc=True)
    ase.io.write(str(path), at, format="vasp")
    return path


CRYSTALS = [  # (id, cell edge Å, atoms, words)
    ("isolated-in-big-cell", 30.0, [("C", (0.0, 0.0, 0.0)), ("H", (15.0, 15.0, 15.0))], "has no neighbour"),
    ("image-too-close", 0.05, [("C", (0.0, 0.0, 0.0))], "a periodic image"),
    ("same-point", 5.0, [("C", (1.0, 1.0, 1.0)), ("H", (1.0, 1.0, 1.0))], "are 0 Å apart"),
]


@pytest.mark.parametrize("case, cell, atoms, words", CRYSTALS, ids=[c[0] for c in CRYSTALS])
def test_degenerate_crystals_are_refused(cry_run, tmp_path, case, cell, atoms, words):
    f = _poscar(tmp_path / "POSCAR", cell, atoms)
    refused(["predict", cry_run, "--structures", f, "-o", tmp_path / "p.zarr"], tmp_path, f, words)


def test_sound_crystal_is_predicted(cry_run, crystals, tmp_path):
    from hambench.store import open_store

    s = open_store(crystals)[0]
    import ase
    import ase.io

    f = tmp_path / "POSCAR"
    ase.io.write(str(f), ase.Atoms(numbers=s.Z, positions=s.pos, cell=s.cell, pbc=True), format="vasp")
    r = cli("predict", cry_run, "--structures", f, "-o", tmp_path / "p.zarr")
    assert r.exit_code == 0, r.output


# --- the truth store ---------------------------------------------------------------------------------------------
def test_wrong_truth_is_named_as_such(demo_store, preds, tmp_path):
    other = tmp_path / "other.zarr"
    prepare("synthetic/random", None, other, quiet=True, count=2, seed=1)
    line = refused(["score", preds, "--truth", other], tmp_path, other, "--truth is not the store", preds)
    assert "changed since" not in line
    copy = tmp_path / "copy.zarr"  # the same content elsewhere is the same truth
    shutil.copytree(demo_store, copy)
    assert cli("score", preds, "--truth", copy).exit_code == 0


def test_structure_file_predictions_have_no_truth(mol_run, tmp_path):
    f = _xyz(tmp_path / "water.xyz", WATER)
    p = tmp_path / "p.zarr"
    assert cli("predict", mol_run, "--structures", f, "-o", p).exit_code == 0
    refused(["score", p], tmp_path, p, "predict --structures", "no DFT truth")


def test_checkpoint_that_is_not_one(demo_store, tmp_path):
    f = _file(tmp_path)
    refused(["predict", f, "--data", demo_store, "-o", tmp_path / "p.zarr"], tmp_path, f, "not a readable checkpoint")
    refused(["equivariance", demo_store, "--data", demo_store], tmp_path, demo_store, "not a checkpoint")
    refused(["predict", tmp_path, "--data", demo_store, "-o", tmp_path / "p.zarr"], tmp_path, tmp_path,
            "without best.pt or last.pt")


# --- bands ---------------------------------------------------------------------------------------------------
BANDS = [  # (id, extra arguments, exit code, what the line names)
    ("molecule-store", None, 1, "is a molecule"),
    ("o-folder", ["-o", "afolder"], 1, "-o: is a folder"),
    ("plot-folder", ["--plot", "afolder"], 1, "--plot: is a folder"),
    ("plot-format", ["--plot", "bands.xyz"], 2, "--plot"),
    ("fermi-nan", ["--fermi", "nan"], 2, "--fermi"),
    ("structure-unknown", ["--structure", "nope"], 1, "--structure"),
]


@pytest.mark.parametrize("case, extra, code, named", BANDS, ids=[b[0] for b in BANDS])
def test_bands_refusals(crystals, demo_store, tmp_path, case, extra, code, named):
    _folder(tmp_path)
    args = ["bands", demo_store] if extra is None else ["bands", crystals, *[
        tmp_path / x if x in ("afolder", "bands.xyz") else x for x in extra]]
    refused(args, tmp_path, named, code=code)
