"""Import of AIRS' QH9 QHNet checkpoints (models/_import_airs.py) against the reference code's own outputs.

The fixture ``tests/data/airs_ref/`` was written by ``benchmarks/ref_airs_fixture.py`` from divelab/AIRS (commit
in its README and ``fixture.json``): AIRS' ``ori_QHNet_with_bias.QHNet`` at a small size with random weights,
saved as AIRS' ``main.py`` saves it, and its float64 outputs (Hartree) on three demo molecules. hambench's
``qhnet`` with the imported weights must reproduce them to 1e-10 relative in float64.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hambench.app.testing import cli
from hambench.basis import BasisLayout
from hambench.basis._conventions import HARTREE_EV
from hambench.errors import InputError
from hambench.store import StoreRange, StoreWriter, open_store
from hambench.testing import TOL
from hambench.training import make_loader

from hambench.models._import_airs import import_airs_qhnet
from hambench.models.run import load_model

REF = Path(__file__).parent / "data" / "airs_ref"
CKPT = REF / "airs_qhnet_small.pt"
FIX = json.loads((REF / "fixture.json").read_text())
#: the fixture's size as hambench overrides (AIRS' constructor arguments of the same names)
OVERRIDES = {k: FIX["constructor"][k] for k in ("hidden_size", "bottle_hidden_size", "num_gnn_layers", "max_radius",
                                               "radius_embed_dim")}


@pytest.fixture(scope="module")
def run(demo_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("airs") / "run"
    import_airs_qhnet(CKPT, out, overrides=OVERRIDES, data=demo_store)
    return out


def _full_matrices(H, batch, layout) -> list[np.ndarray]:
    """Each structure's full matrix (atoms in order, hambench orbital order) from flat blocks ``H``."""
    src, dst, hp = (x.numpy() for x in (batch.edge_src, batch.edge_dst, batch.H_ptr))
    Z, nat = batch.Z.numpy(), batch.natoms.numpy()
    norb = np.array([layout.norb(int(z)) for z in Z])
    first = np.concatenate([[0], np.cumsum(nat)])
    off = np.concatenate([[0], np.cumsum(norb)])  # global orbital offsets; each molecule's start subtracted
    out = []
    for s in range(len(nat)):
        a, b = first[s], first[s + 1]
        F = np.full((off[b] - off[a],) * 2, np.nan)
        for e in np.flatnonzero((src >= a) & (src < b)):
            i, j = src[e], dst[e]
            F[off[i] - off[a]:off[i + 1] - off[a], off[j] - off[a]:off[j + 1] - off[a]] = \
                H[hp[e]:hp[e + 1]].reshape(norb[i], norb[j])
        out.append(F)
    return out


def test_imported_qhnet_reproduces_airs_in_float64(run, demo_store):
    model, ck, layout = load_model(run, dtype="float64")
    store = open_store(demo_store)
    ids = list(store.array("structures/id")[:])
    idx = np.array([ids.index(f"dsgdb9nsd_{k:06d}") for k in FIX["molecules_qm9"]])
    batch = next(iter(make_loader(store, None, batch_size=len(idx), shuffle=False, dtype=torch.float64, blocks=(),
                                  indices=idx)))
    with torch.no_grad():
        H = model(batch)["H"].numpy()
    ref = np.load(REF / "airs_qhnet_small_outputs.npz")
    fulls = _full_matrices(H, batch, layout)
    for k, F in zip(FIX["molecules_qm9"], fulls):
        Zk = batch.Z.numpy()[np.repeat(np.arange(len(idx)), batch.natoms.numpy()) == list(FIX["molecules_qm9"]).index(k)]
        np.testing.assert_array_equal(Zk, ref[f"Z_{k}"])  # the same molecule, atoms in the same order
        R = ref[f"H_{k}"] * HARTREE_EV  # AIRS predicts Hartree
        assert not np.isnan(F).any()
        assert np.abs(F - R).max() <= TOL.reassociation * np.abs(R).max(), k


def test_predict_dtype_flag_reaches_the_reference_from_a_float32_run(run, demo_store, tmp_path):
    """The imported run trains in float32 (QH9's recipe); ``predict --dtype float64`` evaluates it in float64 and
    so reproduces AIRS' float64 outputs to 1e-10 relative, while the default (the run's float32) does not."""
    store = open_store(demo_store)
    ids = list(store.array("structures/id")[:])
    k = FIX["molecules_qm9"][1]
    i = ids.index(f"dsgdb9nsd_{k:06d}")
    got = {}
    for flag in ((), ("--dtype", "float64")):
        out = tmp_path / f"p{len(flag)}.zarr"
        r = cli("predict", run, "--data", demo_store, "-o", out, *flag)
        assert r.exit_code == 0, r.output
        got[flag[-1] if flag else "default"] = open_store(out)[i].H
    model, _, _ = load_model(run, dtype="float64")
    batch = next(iter(make_loader(store, None, batch_size=1, shuffle=False, dtype=torch.float64, blocks=(),
                                  indices=np.array([i]))))
    with torch.no_grad():
        want = model(batch)["H"].numpy()  # = AIRS' float64 outputs (test above), flat in the store's edge order
    scale = np.abs(want).max()
    assert np.abs(got["float64"] - want).max() <= TOL.reassociation * scale
    assert np.abs(got["default"] - want).max() > TOL.reassociation * scale  # float32: the flag is what did it


def test_units_are_folded_in_float64(run):
    ck = torch.load(run / "best.pt", weights_only=True)
    airs = torch.load(CKPT, weights_only=True)["state_dict"]
    assert ck["train_config"]["dtype"] == "float32"  # AIRS trains float32; predict uses it unless told
    assert all(v.dtype == torch.float64 for v in ck["state"].values() if v.is_floating_point())
    for head in ("fc_ii", "fc_ij", "fc_ii_bias", "fc_ij_bias"):
        for part in ("weight", "bias"):
            got = ck["state"][f"{head}.2.{part}"]
            want = airs[f"{head}.hamiltonian.2.{part}"].double() * HARTREE_EV  # one rounding, in float64
            assert torch.equal(got, want), (head, part)
        assert torch.equal(ck["state"][f"{head}.0.weight"], airs[f"{head}.hamiltonian.0.weight"].double())
    assert ck["model"] == {"name": "qhnet", "config": {**ck["model"]["config"], **OVERRIDES}, "preset": None}
    assert ck["engine"]["step"] == 0 and ck["imported_from"]["format"] == "airs-qhnet"


@pytest.mark.slow
def test_run_folder_predicts_scores_and_resumes(run, demo_store, tmp_path):
    preds = tmp_path / "preds.zarr"
    r = cli("predict", run, "--data", demo_store, "-o", preds)
    assert r.exit_code == 0, r.output
    r = cli("score", preds, "--json")
    assert r.exit_code == 0, r.output
    r = cli("equivariance", run, "--data", demo_store, "-n", 1, "--rotations", 1)
    assert r.exit_code == 0, r.output
    fine = tmp_path / "fine"
    shutil.copytree(run, fine)
    r = cli("train", "qhnet", "--data", demo_store, "-o", fine, "--resume", "--max-steps", 2)
    assert r.exit_code == 0, r.output
    after = torch.load(fine / "last.pt", weights_only=True)
    assert after["engine"]["step"] == 2  # (step 0 of the warm-up has lr 0)
    before = torch.load(run / "last.pt", weights_only=True)["state"]["embedding.weight"]
    assert not torch.equal(after["state"]["embedding.weight"].double(), before)  # it trained


def test_cli_import_equals_the_function_and_sets_the_dtype(run, demo_store, tmp_path):
    """``hambench import-checkpoint airs-qhnet`` with ``--set`` (the fixture's size) and ``--dtype float64``
    writes the same weights as the function, with the run's precision set; a bad --set is one line, exit 1."""
    out = tmp_path / "cli_run"
    sets = [a for k, v in OVERRIDES.items() for a in ("--set", f"{k}={v}")]
    r = cli("import-checkpoint", "airs-qhnet", CKPT, "-o", out, "--data", demo_store, "--dtype", "float64", *sets)
    assert r.exit_code == 0, r.output
    a = torch.load(out / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    assert json.loads((out / "config.json").read_text())["train"]["dtype"] == "float64"
    r = cli("import-checkpoint", "airs-qhnet", CKPT, "-o", tmp_path / "bad", "--set", "hiden_size=8")
    assert r.exit_code == 1 and "hiden_size" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


# --- refusals: one line naming the key, nothing written -----------------------------------------------------
def _airs():
    return torch.load(CKPT, weights_only=True)


def _save(tmp_path, obj, name="bad.pt"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def _edit(fn):
    d = _airs()
    fn(d["state_dict"])
    return d


CASES = {
    "unknown key": (lambda: _edit(lambda s: s.__setitem__("e3_gnn_layer.1.conv.extra.weight", torch.zeros(3))),
                    OVERRIDES, "'e3_gnn_layer.1.conv.extra.weight'"),
    "key of a layer the config lacks": (_airs, {**OVERRIDES, "num_gnn_layers": 4}, "'e3_gnn_layer.4."),
    "missing key": (lambda: _edit(lambda s: s.pop("e3_gnn_node_pair_layer.1.fc.0.weight")), OVERRIDES,
                    "'e3_gnn_node_pair_layer.1.fc.0.weight' missing"),
    "shape (QH9 size assumed)": (_airs, {k: v for k, v in OVERRIDES.items() if k != "hidden_size"},
                                 "hidden_size=8"),
    "cut-off": (_airs, {k: v for k, v in OVERRIDES.items() if k != "max_radius"}, "'distance_expansion.cutoff'"),
    "another architecture": (lambda: {"state_dict": {"net.layer.weight": torch.zeros(2, 2)}}, OVERRIDES,
                             "not AIRS' QH9 QHNet"),
    "not a state dict": (lambda: [1, 2, 3], OVERRIDES, "not a state dict"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_refusals_name_the_key_and_write_nothing(case, tmp_path):
    make, overrides, needle = CASES[case]
    src = _save(tmp_path, make())
    out = tmp_path / "run"
    with pytest.raises(InputError, match=None) as e:
        import_airs_qhnet(src, out, overrides=overrides)
    line = str(e.value)
    assert "\n" not in line and needle in line, line
    assert not out.exists() and not list(tmp_path.glob(".run*"))


def test_refuses_other_files_and_bad_overrides(run, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    for src, ov, needle in [(text, OVERRIDES, "not a torch checkpoint"),
                            (run / "best.pt", OVERRIDES, "hambench checkpoint already"),
                            (CKPT, {**OVERRIDES, "hiden_size": 8}, "override hiden_size"),
                            (CKPT, {**OVERRIDES, "conv_s0_dst_twice": False}, "conv_s0_dst_twice")]:
        with pytest.raises(InputError) as e:
            import_airs_qhnet(src, tmp_path / "out", overrides=ov)
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(InputError, match="not empty"):
        import_airs_qhnet(CKPT, run, overrides=OVERRIDES)
    assert not (tmp_path / "out").exists()


def test_refuses_a_store_with_species_beyond_the_checkpoints(demo_store, tmp_path):
    """A molecule store holding sulfur (Z=16, shells as heavy QH9 atoms): QH9's QHNet knows H, C, N, O, F."""
    demo = open_store(demo_store)
    s = demo[0]  # CH4 → SH4 (same shells, so the blocks fit)
    s.Z = np.where(s.Z == 6, 16, s.Z)
    s.species = {16 if z == 6 else z: sh for z, sh in s.species.items()}
    cols = StoreRange.from_structures([s]).columns()
    counts = {"structures": 1, "atoms": len(cols["atoms/Z"]), "edges": len(cols["edges/src"]),
              "H": len(cols["blocks/H"]), "S": len(cols.get("blocks/S", ())), "T": len(cols.get("blocks/T", ()))}
    attrs = {k: v for k, v in demo.attrs.items() if k not in ("counts", "content_checksum")}
    attrs["species"] = {str(z): sh for z, sh in s.species.items()}
    w = StoreWriter(tmp_path / "sulfur.zarr", counts, attrs)
    w.append(cols)
    w.close()
    with pytest.raises(InputError, match=r"Z=\[16\]"):
        import_airs_qhnet(CKPT, tmp_path / "run", overrides=OVERRIDES, data=tmp_path / "sulfur.zarr")
    assert not (tmp_path / "run").exists()
    assert BasisLayout  # (the checkpoint's layout is QH9's: models._import_airs.QH9_SPECIES)
