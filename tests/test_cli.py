"""The command line: help and version, one-line errors with exit codes, prepare + info end to end (demo: test_demo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import hambench
from hambench import __version__
from hambench.app.cli import main
from hambench.testing import TOL

COMMANDS = ["prepare", "train", "predict", "score", "leaderboard", "demo", "info", "export"]


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_help_lists_every_command():
    r = run("--help")
    assert r.exit_code == 0
    for c in COMMANDS:
        assert c in r.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_example(command):
    r = run(command, "--help")
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and "hambench " + command.split()[0] in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["score", "p.zarr"],
        ["leaderboard", "build", "--board", "nob", "-o", "site"],
    ],
)
def test_model_and_score_commands_fail_clearly_on_missing_input(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1, r.output
    assert r.output.count("\n") == 1 and "hambench: error:" in r.output and "no such" in r.output


def test_cutoff_drop_warns_with_counts(tmp_path):
    """synthetic/random has edges within 4 Å: --cutoff 2.5 drops the longer ones, with a warning that counts."""
    from hambench.pipelines.synthetic import SyntheticSource

    full = SyntheticSource(count=1, seed=4).read(0)[0]
    d = np.linalg.norm(full.pos[full.dst] + full.shift @ full.cell - full.pos[full.src], axis=1)
    dropped = int((d >= 2.5).sum())
    assert 0 < dropped < full.nedges
    r = CliRunner().invoke(main, ["-q", "prepare", "--source", "synthetic/random", "--count", "1", "--seed", "4",
                                  "--cutoff", "2.5", "-o", str(tmp_path / "c.zarr")])
    assert r.exit_code == 0, r.output
    warn = f"--cutoff 2.5 Å dropped {dropped:,} of {full.nedges:,} DFT pairs"
    assert f"hambench: warning: {warn}" in r.stderr and warn in r.stdout
    info = json.loads(run("info", str(tmp_path / "c.zarr"), "--json").output)
    assert info["structures"] == 1


def test_cutoff_zero_fill_is_refused_unless_asked(tmp_path):
    """--cutoff 6 Å reaches pairs the 4 Å synthetic "DFT" list lacks: refused with counts, nothing written;
    --zero-fill accepts them and says how many."""
    from hambench import _core
    from hambench.pipelines.synthetic import SyntheticSource

    full = SyntheticSource(count=1, seed=4).read(0)[0]
    src, _, _ = _core.neighbor_list(full.pos, full.cell, (True, True, True), 6.0)
    extra = len(src) - full.nedges
    assert extra > 0
    args = ["-q", "prepare", "--source", "synthetic/random", "--count", "1", "--seed", "4", "--cutoff", "6",
            "-o", str(tmp_path / "z.zarr")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 1 and r.output.count("\n") == 1
    assert f"makes {extra:,} of {len(src):,} edges pairs without a DFT block" in r.output and "--zero-fill" in r.output
    assert list(tmp_path.iterdir()) == []
    r = CliRunner().invoke(main, [*args, "--zero-fill"])
    assert r.exit_code == 0, r.output
    assert f"{extra:,} of {len(src):,} edges zero-filled (--zero-fill)" in r.output


def test_unknown_source_is_one_line_exit_1(tmp_path):
    r = CliRunner().invoke(main, ["prepare", "--source", "nope/x", "-o", str(tmp_path / "o.zarr")])
    assert r.exit_code == 1 and "unknown source 'nope/x'" in r.output and r.output.count("\n") == 1


def test_usage_error_exit_2():
    r = CliRunner().invoke(main, ["prepare"])
    assert r.exit_code == 2


def test_named_dataset_without_input_says_where_to_download(tmp_path):
    r = CliRunner().invoke(main, ["prepare", "--source", "deeph/bilayer_graphene", "-o", str(tmp_path / "o.zarr")])
    assert r.exit_code == 1 and "zenodo" in r.output.lower() and "--input" in r.output
    assert not (tmp_path / "o.zarr").exists()


def test_prepare_then_info(tmp_path):
    out = tmp_path / "s.zarr"
    r = run("-q", "prepare", "--source", "synthetic/random", "-o", str(out), "--augment", "1", "--seed", "3")
    assert r.exit_code == 0 and "wrote" in r.output
    r = run("info", str(out), "--json")
    d = json.loads(r.output)
    assert d["structures"] == 16 and d["augmented"] == 8
    r = run("info", str(out))
    assert "hambench store v1" in r.output


def test_info_on_missing_store():
    r = CliRunner().invoke(main, ["info", "/nonexistent/x.zarr"])
    assert r.exit_code == 1 and "no such store" in r.output


def test_list_sources():
    r = run("prepare", "--list-sources")
    assert r.exit_code == 0
    for s in ("deeph/folder", "openmx/scfout", "pyscf/qm9", "synthetic/random"):
        assert s in r.output


def test_console_script_and_core_import():
    out = subprocess.run([sys.executable, "-c", "import hambench._core as c; print(c.__version__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __version__
    out = subprocess.run([sys.executable, "-m", "hambench", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "prepare" in out.stdout


def test_dft_sources_say_the_expected_time_up_front(tmp_path, capsys):
    """pyscf/qm9: QM9 #1 (CH4, def2-SVP: 14 + 4 x 5 = 34 AOs) costs 0.00119 s · 34^2.07 (the benchmark's fit);
    cached molecules cost nothing."""
    from hambench.pipelines import get_source
    from hambench.pipelines.driver import _say_expected_time

    src = get_source("pyscf/qm9", None, ids="1", raw_dir=tmp_path / "raw")
    assert src.expected_seconds(src.items()[0]) == pytest.approx(0.00119 * 34 ** 2.07, rel=TOL.by_hand)
    _say_expected_time(src, "pyscf/qm9", src.items(), 1)
    err = capsys.readouterr().err
    assert err == ("hambench: pyscf/qm9: 1 DFT run to do, expected ~2 s on one worker (fit of "
                   "benchmarks/results/bench_pyscf_qm9.txt, 2-core machine)\n")
    demo = get_source("pyscf/qm9", None, max_heavy=3, limit=10, raw_dir=Path(hambench.__file__).parent / "data" /
                      "demo_qm9")
    _say_expected_time(demo, "pyscf/qm9", demo.items(), 1)
    assert capsys.readouterr().err == "hambench: pyscf/qm9: all 10 DFT results cached\n"


@pytest.mark.parametrize("option", [["--augment", "-1"], ["--workers", "0"], ["--cutoff", "0"], ["--limit", "0"]])
def test_bad_option_values_are_usage_errors_exit_2(option, tmp_path):
    r = CliRunner().invoke(main, ["prepare", "--source", "synthetic/random", *option, "-o", str(tmp_path / "x.zarr")])
    assert r.exit_code == 2 and option[0] in r.output
    assert not (tmp_path / "x.zarr").exists()


def test_summary_and_info_read_well(tmp_path, monkeypatch):
    """One real DFT molecule (QM9 #1, CH4, ~2 s) into a relative -o: plurals, the raw cache named, absolute
    source paths, no '← None', short floats, one thousands separator style."""
    import re

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["-q", "prepare", "--source", "pyscf/qm9", "--ids", "1", "-o", "q.zarr"])
    assert r.exit_code == 0, r.output
    assert "wrote q.zarr: 1 structure, 5 atoms, 25 edges" in r.stdout
    assert "raw DFT results cached in q.raw (reruns reuse them; delete it to recompute)" in r.stdout
    assert (tmp_path / "q.raw").is_dir()
    text = run("info", "q.zarr").output
    assert "1 (0 rotation-augmented), 5 atoms each" in text and "← None" not in text
    assert "source      pyscf/qm9 (no input files: generated here)" in text
    assert not re.search(r"\d\.\d{7,}", text)  # no float printed with its full repr
    from hambench.store._store import open_store

    s = open_store(tmp_path / "q.zarr")[0]
    assert s.sources and all(p.startswith(str(tmp_path.resolve())) for p, _ in s.sources)


def test_dft_sources_advance_the_bar_per_item():
    from hambench.pipelines.driver import MAX_RANGE_ITEMS, _ranges

    assert _ranges(20, 1, 1) == [[k, k + 1] for k in range(20)]
    assert _ranges(200, 1) == [[a, min(200, a + 50)] for a in range(0, 200, 50)] and MAX_RANGE_ITEMS >= 50


# --- prepare's source flags, generated from the sources' Options --------------------------------------------
#: every source flag prepare had before the flags were generated (they must keep working)
FLAGS_BEFORE = ["--edges", "--limit", "--ids", "--max-atoms", "--max-heavy", "--sample", "--dataset-version",
                "--max-cycle", "--threads", "--xc", "--basis", "--grid-level", "--conv-tol", "--density-fit",
                "--raw-dir", "--system", "--structures", "--count", "--supercell", "--displacement", "--temperature",
                "--kmesh", "--ke-cutoff", "--vacuum", "--smearing", "--fft-mesh", "--alias-tol", "--deeph-dir"]


def test_prepare_flags_are_the_union_of_the_sources_options():
    from hambench.app.cli import _DRIVER_FIELDS, prepare, source_option_table
    from hambench.pipelines.registry import SOURCES, option_fields

    ctx = prepare.make_context("prepare", ["-o", "x.zarr", "-s", "x"], resilient_parsing=True)
    by_name = {p.name: p for p in prepare.get_params(ctx)}
    want = {f.name for n in SOURCES for f in option_fields(n)} - set(_DRIVER_FIELDS)
    table = source_option_table()
    assert set(table) == want and want <= set(by_name)
    flags = {o for p in by_name.values() for o in p.opts}
    assert set(FLAGS_BEFORE) <= flags and by_name["version"].opts == ["--dataset-version"]
    for n in SOURCES:  # each flag's help names every source that takes it (a family as FAMILY/*)
        for f in option_fields(n):
            if f.name not in _DRIVER_FIELDS:
                assert n in table[f.name]["sources"]
                assert n in by_name[f.name].help or f"{n.split('/')[0]}/*" in by_name[f.name].help
    for name, p in by_name.items():
        if name in table:
            assert p.help.startswith("[") and "(no help yet)" not in p.help, (name, p.help)
            assert p.is_flag == (table[name]["type"] == "bool")


def test_help_of_other_commands_imports_no_source_module():
    code = ("import sys; from click.testing import CliRunner; from hambench.app.cli import main; "
            "r = CliRunner().invoke(main, ['train', '--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in sys.modules if m.startswith('hambench.pipelines.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("args, flag", [
    (["--kmesh", "2x2x1"], "--kmesh"),
    (["--dataset-version", "100k"], "--dataset-version"),
    (["--density-fit"], "--density-fit"),
], ids=["crystal-flag", "qh9-alias", "bool-flag"])
def test_option_the_source_lacks_is_one_line_exit_1(args, flag, tmp_path):
    from hambench.app.testing import one_line_error

    r = CliRunner().invoke(main, ["prepare", "--source", "synthetic/random", *args, "-o", str(tmp_path / "x.zarr")])
    line = one_line_error(r, 1)
    assert f"source synthetic/random has no option {flag}; its options: --count" in line and r.output.count("\n") == 1
    assert not (tmp_path / "x.zarr").exists()


def test_generated_flags_reach_the_source(tmp_path):
    """--natoms / --spinful (synthetic's own fields, no hand-written flag) arrive typed; False flags are dropped."""
    out = tmp_path / "n.zarr"
    r = run("-q", "prepare", "--source", "synthetic/random", "--count", "2", "--natoms", "3", "--spinful",
            "--edge-cutoff", "3.5", "-o", str(out))
    assert r.exit_code == 0, r.output
    from hambench.store._store import open_store

    st = open_store(out)
    assert st[0].natoms == 3 and st[0].spinful
    assert st.attrs["source"]["options"] == {"count": "2", "edge_cutoff": "3.5", "natoms": "3", "spinful": "True"}
    r = CliRunner().invoke(main, ["prepare", "--source", "qh9/stable", "--dataset-version", "200k", "-o",
                                  str(tmp_path / "q.zarr")])
    assert r.exit_code == 2 and "--dataset-version" in r.output


def _command_paths(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _command_paths(cmd, (*prefix, name))


def test_quiet_is_accepted_after_every_subcommand(tmp_path):
    """``-q`` after the subcommand means what it means before it: every command takes it, and it quiets work."""
    from hambench.app.cli import main

    paths = list(_command_paths(main))
    assert {("train",), ("prepare",), ("score",), ("leaderboard", "list")} <= set(paths)
    for path in paths:
        r = CliRunner().invoke(main, [*path, "--help"])
        assert r.exit_code == 0 and "-q, --quiet" in r.output, (path, r.output)
    r = CliRunner().invoke(main, ["prepare", "--source", "synthetic/random", "--count", "2", "-o",
                                  str(tmp_path / "s.zarr"), "-q"])
    assert r.exit_code == 0, r.output
    assert [ln for ln in r.output.splitlines() if ln.strip()] == [r.output.strip().splitlines()[-1]]
    assert r.output.startswith("wrote ")
