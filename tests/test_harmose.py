"""HarmoSE (models/harmose.py): a frozen DeepH-E3 stage 1 + a graph transformer correction, on real molecules.

Checks: at step 0 (zero-initialised head) HarmoSE equals its stage 1 exactly; stage-2 training never changes
a stage-1 parameter (bit-identical) while it lowers the loss; its equivariance error is measured and printed
against the stage-1 bound (exactly equivariant, float64 ≤ 1e-9 relative) — stage 2 is only approximately
equivariant and the test says by how much; the invariant node feature g_i is invariant under rotations and a
reflection to 1e-12 (float64) and equals a by-hand loop over the triplets; a checkpoint works (predict, score,
equivariance) after its stage-1 folder is deleted; harmose-tracegrad fuses the edge features stage 1's next block
reads (after TraceGrad's f + v); the ablation switches build; bad --stage1 inputs are one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hambench.app.cli import main
from hambench.training._data import batch_from_structures
from hambench.errors import InputError
from hambench.basis._layout import BasisLayout
from hambench.basis._so3 import random_rotation, rotate_edge_blocks
from hambench.store._store import open_store
from hambench.testing import TOL


TINY = ("--preset", "tiny")


@pytest.fixture(scope="module")
def demo(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def stage1(demo, tmp_path_factory):
    """A tiny DeepH-E3 trained for a few steps on the demo molecules (float64)."""
    from hambench.models.run import train_run

    run = tmp_path_factory.mktemp("stage1") / "deephe3"
    train_run("deephe3", demo, run, preset="tiny", sets=["train.dtype=float64"],
              overrides={"train": {"max_steps": 4, "max_epochs": 100}}, device="cpu")
    return run


def _build(stage1, layout, name="harmose", **kw):
    """A small HarmoSE (float64, seed 0) built as a run builds it: the caller loads the stage-1 checkpoint."""
    from hambench.models import registry
    from hambench.models.harmose import HarmoSEConfig
    from hambench.models.run import build_model

    cfg = HarmoSEConfig(stage1=str(stage1), width=16, heads=4, blocks_per_group=1, num_gaussians=8, sh_lmax=2,
                        angle_repeat=4, **kw)
    return build_model(registry.get(name), cfg, layout, "float64", seed=0).double().eval()


def _batch(store, ks, R=None):
    structs = [store[k] for k in ks]
    if R is not None:
        for s in structs:
            s.pos = s.pos @ R.T
    return batch_from_structures(structs, store.layout).to(dtype=torch.float64)


def test_step0_equals_stage1_and_stage1_is_frozen(demo, stage1):
    from hambench.models.run import load_model

    st = open_store(demo)
    lay = st.layout
    m = _build(stage1, lay)
    s1, _, _ = load_model(stage1, dtype="float64")
    b = _batch(st, [3, 4])
    with torch.no_grad():
        out = m(b)
        ref = s1(b)["H"]
    assert torch.equal(out["H"], ref)  # zero-initialised head: ΔH = 0 exactly
    assert all(not p.requires_grad for p in m.stage1.parameters())
    m.train()
    assert not m.stage1.training and m.training


def test_equivariance_error_is_measured(demo, stage1, capsys):
    """Stage 1 is exactly equivariant; with a non-zero head HarmoSE is not, and the error is reported."""
    st = open_store(demo)
    lay = st.layout
    m = _build(stage1, lay, zero_init_head=False)
    R = random_rotation(np.random.default_rng(7))
    k = 5
    s = st[k]
    with torch.no_grad():
        out = m(_batch(st, [k]))
        outR = m(_batch(st, [k], R))
    rot = lambda H: rotate_edge_blocks(H, s.Z[s.src], s.Z[s.dst], st.species, R)  # noqa: E731
    err1 = np.abs(outR["H1"].numpy() - rot(out["H1"].numpy())).max()
    err = np.abs(outR["H"].numpy() - rot(out["H"].numpy())).max()
    scale = np.abs(out["H"].numpy()).max()
    with capsys.disabled():
        print(f"\nHarmoSE equivariance error (untrained head, float64): max {err:.3e} eV; stage-1 bound {err1:.1e} eV "
              f"(|H| max {scale:.2f} eV)")
    assert err1 <= TOL.network64 * scale  # stage 1: exact
    assert err > 1e3 * err1  # stage 2 is not equivariant by construction: the test must see it


def test_training_lowers_loss_and_keeps_stage1_bit_identical(demo, stage1, tmp_path):
    from hambench.models.run import load_model, train_run

    run = tmp_path / "harmose"
    summary = train_run("harmose", demo, run, preset="tiny", sets=[f"model.stage1={stage1}", "train.dtype=float64",
                                                                    "train.val_fraction=0.0", "train.log_every=1"],
                        overrides={"train": {"max_steps": 12, "max_epochs": 1000}}, device="cpu")
    import json

    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in lines if r.get("event") == "train"]
    assert len(train_losses) >= 2 and train_losses[-1] < train_losses[0]
    s1, _, _ = load_model(stage1, dtype="float64")
    m, ck, _ = load_model(run / "last.pt", dtype="float64")
    ref = s1.state_dict()
    got = m.stage1.state_dict()
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    assert summary["parameters"] > sum(p.numel() for p in s1.parameters())


@pytest.mark.parametrize("kw", [{"cascade": False, "fuse_stage1": False}, {"fuse_stage1": False},
                                {"attention": False}])
def test_ablations_build_and_run(demo, stage1, kw):
    st = open_store(demo)
    m = _build(stage1, st.layout, **kw)
    b = _batch(st, [1, 2])
    out = m(b)
    assert out["H"].shape == b.H.shape and torch.isfinite(out["H"]).all()
    assert ("H1" in out) == kw.get("cascade", True)


def test_bad_stage1_is_one_line(demo, stage1, tmp_path):
    st = open_store(demo)
    lay = st.layout
    with pytest.raises(InputError, match="--stage1"):
        _build("", lay)
    with pytest.raises(InputError, match="not found"):
        _build(tmp_path / "nope.pt", lay)
    with pytest.raises(InputError, match="'deephe3' model; this HarmoSE needs tracegrad-deephe3"):
        _build(stage1, lay, name="harmose-tracegrad")
    with pytest.raises(InputError, match="unknown to the model"):
        _build(stage1, BasisLayout({1: [0, 0, 1], 6: [0, 0, 0, 1, 1, 2], 7: [0, 0, 0, 1, 1, 2],
                                    8: [0, 0, 0, 1, 1, 2], 9: [0, 0, 0, 1, 1, 2], 16: [0, 1]}))
    r = CliRunner().invoke(main, ["train", "harmose", "--data", str(demo), "-o", str(tmp_path / "r"), *TINY])
    assert r.exit_code == 1 and "--stage1" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "last.pt").exists()


def test_equivariance_command(demo, stage1, tmp_path):
    """`hambench equivariance`: a DeepH-E3 checkpoint is exact (float64); the JSON names what was measured."""
    import json

    out = tmp_path / "eq.json"
    r = CliRunner().invoke(main, ["equivariance", str(stage1), "--data", str(demo), "-n", "2", "--rotations", "2",
                                  "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["model"] == "deephe3" and d["n_structures"] == 2 and d["n_rotations"] == 2 and d["dtype"] == "float64"
    assert 0 <= d["max_meV"] <= TOL.network64 * d["scale_meV"] * 50 and d["mean_meV"] <= d["max_meV"]
    assert "equivariance error max" in r.output and "ΔH" not in r.output
    assert d["dH_scale_meV"] is None and d["relative_mean_dH"] is None and d["relative_max_dH"] is None
    # the same measurement by hand on one structure and one rotation
    from hambench.models.equivariance import equivariance_error
    from hambench.models.run import load_model

    m, _, lay = load_model(stage1, dtype="float64")
    st = open_store(demo)
    e = equivariance_error(m, [st[0]], lay, n_rotations=1, seed=3)
    R = random_rotation(np.random.default_rng(3))
    s = st[0]
    with torch.no_grad():
        H0 = m(_batch(st, [0]))["H"].numpy()
        HR = m(_batch(st, [0], R))["H"].numpy()
    want = np.abs(HR - rotate_edge_blocks(H0, s.Z[s.src], s.Z[s.dst], st.species, R)).max() * 1e3
    assert e["max_meV"] == pytest.approx(want, rel=TOL.roundoff_of_roundoff, abs=TOL.exact64)
    bad = CliRunner().invoke(main, ["equivariance", str(stage1), "--data", str(demo), "--rotations", "0"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1  # a flag out of range: usage, exit 2
    assert "--rotations" in bad.output


# --- g_i: invariants only (Eq. 2) ------------------------------------------------------------------------------
def test_g_is_invariant_under_rotations_and_reflection(demo, stage1):
    """g_i reads element and pair embeddings, distances and the angle only: rigid rotations (and a reflection,
    which flips the odd-l spherical harmonics the transformer's edge inputs carry) leave it unchanged to 1e-12."""
    st = open_store(demo)
    m = _build(stage1, st.layout)
    ks = list(range(len(st)))
    with torch.no_grad():
        g0 = m.node_invariant(_batch(st, ks)).numpy()
        rng = np.random.default_rng(11)
        worst = 0.0
        for Q in [random_rotation(rng) for _ in range(4)] + [np.diag([1.0, 1.0, -1.0]) @ random_rotation(rng)]:
            worst = max(worst, np.abs(m.node_invariant(_batch(st, ks, Q)).numpy() - g0).max())
    scale = np.abs(g0).max()
    assert scale > 0.1  # g is not trivially zero
    assert worst <= TOL.exact64 * scale, f"g_i changes by {worst / scale:.2e} relative under O(3)"


def test_g_equals_a_loop_over_adjacent_neighbour_pairs(demo, stage1):
    """The second implementation: for each atom, its edges of non-zero length in edge order, adjacent pairs (j, k),
    the MLP of [x_i, x_j, x_k, pair_ij, pair_ik, G(|r_ij|), G(|r_ik|), cos θ_jik × repeat], averaged."""
    st = open_store(demo)
    m = _build(stage1, st.layout)
    k = 6
    s = st[k]
    with torch.no_grad():
        got = m.node_invariant(_batch(st, [k])).numpy()
        sp = m._species_index[torch.as_tensor(s.Z).long()]
        ns = m.n_species
        for i in range(len(s.Z)):
            nb = [e for e in range(len(s.src)) if s.src[e] == i and np.linalg.norm(s.pos[s.dst[e]] - s.pos[i]) > 1e-8]
            rows = []
            for a, b in zip(nb[:-1], nb[1:]):
                j, kk = int(s.dst[a]), int(s.dst[b])
                rj, rk = s.pos[j] - s.pos[i], s.pos[kk] - s.pos[i]
                dj, dk = np.linalg.norm(rj), np.linalg.norm(rk)
                cos = torch.full((m.cfg.angle_repeat,), float(rj @ rk / (dj * dk)), dtype=torch.float64)
                G = lambda d: m.gauss(torch.tensor([d], dtype=torch.float64))[0]  # noqa: E731
                rows.append(m.triplet(torch.cat([m.node_emb(sp[[i, j, kk]]).reshape(-1),
                                                 m.pair_emb(sp[i] * ns + sp[[j, kk]]).reshape(-1), G(dj), G(dk), cos])))
            want = torch.stack(rows).mean(0).numpy() if rows else np.zeros(m.cfg.width)
            np.testing.assert_allclose(got[i], want, rtol=TOL.roundoff_long, atol=TOL.roundoff_long)


# --- self-contained checkpoints ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hs_run(demo, stage1, tmp_path_factory):
    """A HarmoSE trained for 3 steps on a *copy* of the stage-1 run, which is then deleted: (run, H before)."""
    import shutil

    from hambench.models.run import load_model, train_run

    base = tmp_path_factory.mktemp("selfcontained")
    s1 = base / "stage1"
    shutil.copytree(stage1, s1)
    run = base / "hs"
    train_run("harmose", demo, run, preset="tiny", sets=[f"model.stage1={s1}", "train.dtype=float64"],
              overrides={"train": {"max_steps": 3, "max_epochs": 100}}, device="cpu")
    st = open_store(demo)
    m, _, _ = load_model(run, dtype="float64")  # while the stage-1 folder exists
    with torch.no_grad():
        H = m(_batch(st, [0, 1]))["H"].numpy()
    shutil.rmtree(s1)
    return run, H


def test_checkpoint_works_after_stage1_folder_is_deleted(demo, stage1, hs_run, tmp_path):
    import json

    from hambench.models import registry
    from hambench.models.run import build_model, load_model, train_run
    from hambench.training import load_checkpoint

    run, H_before = hs_run
    ck = load_checkpoint(run)
    assert not Path(ck["model"]["config"]["stage1"]).exists()
    rec = ck["stage1"]
    assert rec["name"] == "deephe3" and rec["layout"] == load_checkpoint(stage1)["layout"]
    # the model rebuilt from the checkpoint alone = the one rebuilt from the original stage-1 file + the state
    m, _, _ = load_model(run, dtype="float64")
    ref = build_model(registry.get("harmose"), _cfg_with_stage1(ck, stage1), open_store(demo).layout, "float64", 0)
    ref.load_state_dict(ck["state"])
    st = open_store(demo)
    with torch.no_grad():
        H = m(_batch(st, [0, 1]))["H"].numpy()
        H_ref = ref.eval()(_batch(st, [0, 1]))["H"].numpy()
    assert np.array_equal(H, H_ref) and np.array_equal(H, H_before)
    assert np.abs(H - m.stage1(_batch(st, [0, 1]))["H"].detach().numpy()).max() > 0  # stage 2 has trained
    preds = tmp_path / "p.zarr"
    r = CliRunner().invoke(main, ["predict", str(run), "--data", str(demo), "-o", str(preds)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["-q", "score", str(preds), "-o", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["metrics"]["H_mae"] > 0
    r = CliRunner().invoke(main, ["equivariance", str(run), "--data", str(demo), "-n", "1", "--rotations", "1"])
    assert r.exit_code == 0, r.output
    s = train_run("harmose", demo, run, resume=True, overrides={"train": {"max_steps": 4}}, device="cpu")
    assert s["steps"] == 4 and "stage1" in load_checkpoint(run / "last.pt")  # --resume needs no stage-1 file either


def _cfg_with_stage1(ck, stage1):
    from hambench.config import from_dict
    from hambench.models.harmose import HarmoSEConfig

    return from_dict(HarmoSEConfig, {**ck["model"]["config"], "stage1": str(stage1)}, "test")


def test_old_checkpoint_without_stage1_record_is_refused(hs_run, demo, tmp_path):
    run, _ = hs_run
    d = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    del d["stage1"]
    old = tmp_path / "old.pt"
    torch.save(d, old)
    out = tmp_path / "p.zarr"
    r = CliRunner().invoke(main, ["predict", str(old), "--data", str(demo), "-o", str(out)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "older format" in r.output and "retrain" in r.output and not out.exists()


def test_stage1_of_another_store_is_one_line(stage1, tmp_path_factory, tmp_path):
    """A stage 1 trained on the demo molecules (H, C, N, O, F) for a HarmoSE on MoTe2: exit 1, nothing written."""
    import _train_data

    mote2 = _train_data.mote2_store(tmp_path_factory)
    out = tmp_path / "hs"
    r = CliRunner().invoke(main, ["train", "harmose", "--data", str(mote2), "--stage1", str(stage1), *TINY,
                                  "--max-steps", "1", "-o", str(out)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "stage-1 model does not fit these data" in r.output and "unknown to the model" in r.output
    assert not out.exists()


# --- harmose-tracegrad: stage 1's features after f + v ----------------------------------------------------------
def test_harmose_tracegrad_fuses_features_after_f_plus_v(demo):
    """E⁽ˡ⁾ handed to stage 2 = the edge features the next DeepH-E3 block (or the output Linear) reads, which
    differ from the edge update's own output by TraceGrad's v (made non-zero here)."""
    from hambench.models import registry
    from hambench.models.harmose import HarmoSEConfig
    from hambench.models.run import build_model, resolve_config

    st = open_store(demo)
    lay = st.layout
    tg = build_model(registry.get("tracegrad-deephe3"), resolve_config("tracegrad-deephe3", "tiny").model, lay,
                     "float64", seed=0)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in tg.parameters():
            if not bool(p.abs().max() > 0):  # zero-initialised (v = 0 at step 0): make v non-zero
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    tg.eval()
    cfg = HarmoSEConfig(width=16, heads=4, blocks_per_group=1, num_gaussians=8, sh_lmax=2, angle_repeat=4)
    m = registry.get("harmose-tracegrad").build(cfg, lay, stage1=tg).double().eval()
    net = tg.backbone
    reads, pre = [], []
    hooks = [b.register_forward_pre_hook(lambda mod, a: reads.append(a[1].detach())) for b in net.node_blocks[1:]]
    hooks.append(net.lin_edge.register_forward_pre_hook(lambda mod, a: reads.append(a[0].detach())))
    hooks += [b.register_forward_hook(lambda mod, a, o: pre.append(o.detach())) for b in net.edge_blocks]
    try:
        _, _, E = m._run_stage1(_batch(st, [2, 3]))
    finally:
        for h in hooks:
            h.remove()
    assert len(E) == len(reads) == len(pre) == m.n_groups
    for k in range(m.n_groups):
        assert torch.equal(E[k], reads[k]), k
        assert (E[k] - pre[k]).abs().max() > 1e-3 * pre[k].abs().max(), k  # v is really there


def test_equivariance_relative_to_stage2_correction(demo, hs_run, tmp_path):
    """HarmoSE: mean and max error, and both over the mean |ΔH| of stage 2 — ΔH and the residuals by hand."""
    import json

    from hambench.models.run import load_model

    run, _ = hs_run
    out = tmp_path / "eq.json"
    r = CliRunner().invoke(main, ["equivariance", str(run), "--data", str(demo), "-n", "2", "--rotations", "2",
                                  "--seed", "4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["model"] == "harmose" and "relative to mean |ΔH| of stage 2" in r.output
    m, _, lay = load_model(run, dtype="float64")
    st = open_store(demo)
    rng = np.random.default_rng(4)
    res, dH = [], []
    with torch.no_grad():
        for k in (0, 1):
            s = st[k]
            out0 = m(_batch(st, [k]))
            for _ in range(2):
                R = random_rotation(rng)
                HR = m(_batch(st, [k], R))["H"].numpy()
                res.append(np.abs(HR - rotate_edge_blocks(out0["H"].numpy(), s.Z[s.src], s.Z[s.dst], st.species, R)))
                dH.append(np.abs(out0["dH"].numpy()))
    res, dH = np.concatenate(res), np.concatenate(dH)
    assert dH.mean() > 0 and res.max() > 0
    for key, want in (("mean_meV", res.mean() * 1e3), ("max_meV", res.max() * 1e3), ("dH_scale_meV", dH.mean() * 1e3),
                      ("relative_mean_dH", res.mean() / dH.mean()), ("relative_max_dH", res.max() / dH.mean())):
        assert d[key] == pytest.approx(want, rel=TOL.roundoff_of_roundoff), key
