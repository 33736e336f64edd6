"""``hambench import-checkpoint deephe3``: the reference's own checkpoint folder (tests/data/deephe3_ref, made by
benchmarks/ref_deephe3_fixture.py from Xiaoxun-Gong/DeepH-E3 @ f011d5f5) imported and run in float64 matches the
reference's own float64 outputs on the real MoTe2 crystal; the run folder works with predict, score, equivariance
and train --resume; bad folders are refused with one line and nothing written. And the parameter count of
hambench's DeepH-E3 at the paper config against the reference constructor's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hambench.app.cli import main
from hambench.testing import TOL, require_realdata

from _train_data import mote2_store

REF = Path(__file__).parent / "data" / "deephe3_ref"
CKPT = REF / "mote2_small"
# Xiaoxun-Gong/DeepH-E3 @ f011d5f5c94a8aae39c885614a145de07620139c, counted by its own Net constructor
# (benchmarks/ref_deephe3_fixture.py; tests/data/deephe3_ref/README.md)
REF_PAPER_MOTE2 = 721_343  # paper config (train_default.ini) on MoTe2
REF_LIN_NODE_PAPER = 65  # of which in lin_node (64x0e -> 1x0e + bias), unused for H: not built by hambench
REF_PATHS_PAPER = 659  # (part of node/node/edge input, SH, output) paths = W'/W'' pairs
REF_SMALL = 73_857  # the fixture's small config
REF_LIN_NODE_SMALL = 9


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    require_realdata("deeph_new_MoTe2")
    return mote2_store(tmp_path_factory)


@pytest.fixture(scope="module")
def imported(store, tmp_path_factory):
    run = tmp_path_factory.mktemp("dhe3") / "run"
    r = _cli("import-checkpoint", "deephe3", CKPT, "--data", store, "-o", run, "--dtype", "float64")
    assert r.exit_code == 0, r.output
    assert f"{REF_SMALL - REF_LIN_NODE_SMALL:,} parameters" in r.output
    return run


def _blocks(src, dst, shift, Z, H, species) -> dict:
    norb = {int(z): sum(2 * l + 1 for l in ls) for z, ls in species.items()}
    out, k = {}, 0
    for e in range(len(src)):
        n = norb[int(Z[src[e]])] * norb[int(Z[dst[e]])]
        out[(int(src[e]), int(dst[e]), *map(int, shift[e]))] = np.asarray(H[k:k + n])
        k += n
    assert k == len(H)
    return out


def test_import_matches_the_reference_outputs(imported, store, tmp_path):
    """float64 predictions of the imported run = the reference's float64 outputs, edge by edge (measured 1e-15
    relative to max |H|)."""
    from hambench.store import open_store

    preds = tmp_path / "p.zarr"
    r = _cli("predict", imported, "--data", store, "-o", preds, "--device", "cpu")
    assert r.exit_code == 0, r.output
    s = open_store(preds)[0]
    assert s.H.dtype == np.float64
    ref = np.load(REF / "ref_outputs.npz")
    ours = _blocks(s.src, s.dst, s.shift, s.Z, s.H, s.species)
    theirs = _blocks(ref["src"], ref["dst"], ref["shift"], ref["Z"], ref["H"], s.species)
    assert ours.keys() == theirs.keys() and len(ours) == 131
    scale = max(np.abs(v).max() for v in theirs.values())
    err = max(np.abs(ours[k] - theirs[k]).max() for k in ours)
    assert err <= TOL.reassociation * scale, (err, scale)


@pytest.mark.slow
def test_imported_run_scores_checks_equivariance_and_fine_tunes(imported, store, tmp_path):
    preds = tmp_path / "p.zarr"
    assert _cli("predict", imported, "--data", store, "-o", preds, "--device", "cpu").exit_code == 0
    r = _cli("score", preds, "--truth", store, "--json")
    assert r.exit_code == 0, r.output
    r = _cli("equivariance", imported, "--data", store, "--rotations", 1)
    assert r.exit_code == 0, r.output
    run = tmp_path / "ft"
    shutil.copytree(imported, run)
    before = torch.load(run / "last.pt", weights_only=True)["state"]
    r = _cli("-q", "train", "deephe3", "--data", store, "-o", run, "--resume", "--max-steps", 2, "--device", "cpu")
    assert r.exit_code == 0, r.output
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["engine"]["step"] == 2 and ck["train_config"]["dtype"] == "float64"
    assert not torch.equal(ck["state"]["lin_edge.weight"], before["lin_edge.weight"])  # it trained
    cfg = json.loads((imported / "config.json").read_text())
    assert cfg["imported_from"]["format"] == "deephe3" and cfg["train"]["dtype"] == "float64"


def test_paper_config_parameter_count_equals_the_reference():
    """hambench's DeepH-E3 at the paper config on MoTe2 has the reference's parameters, path for path (one
    W′/W″ pair per part of the concatenated input), less the unused lin_node."""
    from hambench.basis import BasisLayout
    from hambench.models import common
    from hambench.models.deephe3 import DeepHE3, DeepHE3Config

    layout = BasisLayout({42: [0, 0, 0, 1, 1, 2, 2], 52: [0, 0, 0, 1, 1, 2, 2]}, False)
    with common.default_dtype(torch.float32):
        m = DeepHE3(DeepHE3Config(), layout)
    assert sum(p.numel() for p in m.parameters()) == REF_PAPER_MOTE2 - REF_LIN_NODE_PAPER
    convs = [b.conv.tp for b in (*m.node_blocks, *m.edge_blocks)]
    assert sum(len(t.paths) for t in convs) == REF_PATHS_PAPER
    assert sum(len(t.w1) for t in convs) == sum(len(t.w2) for t in convs) == REF_PATHS_PAPER
    # one merged e3nn product per conv runs them: 232 paths
    assert sum(len(t.tp.instructions) for t in convs) == 232


# --- refusals --------------------------------------------------------------------------------------------------
def _copy(tmp_path) -> Path:
    d = tmp_path / "ref_run"
    shutil.copytree(CKPT, d)
    return d


def _edit_state(d: Path, fn) -> None:
    obj = torch.load(d / "best_model.pkl", weights_only=True)
    fn(obj["state_dict"])
    torch.save(obj, d / "best_model.pkl")


def _unknown(d):
    _edit_state(d, lambda s: s.__setitem__("extra_head.weight", torch.zeros(3)))


def _missing(d):
    _edit_state(d, lambda s: s.pop("node_update_blocks.1.lin_pre.weight"))


def _shape(d):
    _edit_state(d, lambda s: s.__setitem__("lin_edge.bias", torch.zeros(7)))


def _other_arch(d):
    # a QHNet-like state dict (divelab/AIRS names)
    obj = torch.load(d / "best_model.pkl", weights_only=True)
    obj["state_dict"] = {"node_embedding.weight": torch.zeros(10, 4), "hidden_layers.0.weight": torch.zeros(2)}
    torch.save(obj, d / "best_model.pkl")


def _beyond(d):
    info = json.loads((d / "src" / "dataset_info.json").read_text())
    info["index_to_Z"].append(16)
    info["orbital_types"].append([0, 0, 1, 1, 2])
    (d / "src" / "dataset_info.json").write_text(json.dumps(info))


def _no_src(d):
    shutil.rmtree(d / "src")


def _ini(d):
    (d / "src" / "train.ini").write_text("[network]\nirreps_mid = 8x0e+4x1o\nnum_blocks = 2\n"
                                          "spherical_harmonics_lmax = 2\nirreps_embed = 8x0e\n")


@pytest.mark.parametrize("damage, expect", [
    (_unknown, "unknown key 'extra_head.weight'"),
    (_missing, "missing key 'node_update_blocks.1.lin_pre.weight'"),
    (_shape, "key 'lin_edge.bias' has shape (7,)"),
    (_other_arch, "not a DeepH-E3 state dict"),
    (_beyond, "elements Z=[16] are beyond the store's"),
    (_no_src, "not a DeepH-E3 training output folder: no src/train.ini"),
    (_ini, "unknown key 'node_update_blocks.0.conv.tp.weights1.6' (not in the DeepH-E3 that src/train.ini"),
])
def test_refusals_name_the_problem_and_write_nothing(store, tmp_path, damage, expect):
    d = _copy(tmp_path)
    damage(d)
    out = tmp_path / "out"
    r = _cli("import-checkpoint", "deephe3", d, "--data", store, "-o", out)
    assert r.exit_code == 1, r.output
    line = r.output.strip()
    assert "\n" not in line and expect in line, line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_refuses_an_unknown_format_and_a_missing_store(tmp_path):
    r = _cli("import-checkpoint", "nequip", CKPT, "-o", tmp_path / "o")
    assert r.exit_code == 2 and "nequip" in r.output
    r = _cli("import-checkpoint", "deephe3", CKPT, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "--data STORE is needed" in r.output
    assert not (tmp_path / "o").exists()


def test_spinful_readout_is_the_references():
    """DeepH-E3's SOC readout (its e3TensorDecomp.get_H on random outputs, tests/data/deephe3_ref/readout_soc.npz)
    = the head of hambench's DeepH-E3 with its readout scale 1/√(2L+1) (X⁰ parts), 1/√((2L+1)(2L′+1)) (spin
    vector parts), channels in the reference's target order."""
    from hambench.basis import BasisLayout
    from hambench.models.common import BlockHead
    from hambench.models._import_deephe3 import _ref_labels
    from hambench.models.deephe3 import _readout_scale

    ref = np.load(REF / "readout_soc.npz")
    shells = [int(l) for l in ref["shells"]]
    head = BlockHead(BasisLayout({83: shells}, True))

    class _M:
        pass

    m = _M()
    m.head = head
    info = {"index_to_Z": [83], "orbital_types": [shells], "spinful": True}
    assert _ref_labels(m, info, "x") == list(head.targets)  # same channel order: no permutation here
    x = torch.tensor(ref["x"]) * _readout_scale(head)
    E = x.shape[0]
    Z = torch.full((E,), 83)
    nn = ref["H"].shape[1]
    H = head(x, Z, Z, torch.arange(E + 1) * nn).reshape(E, nn).numpy()
    assert np.abs(H - ref["H"]).max() <= TOL.roundoff_long * np.abs(ref["H"]).max()
