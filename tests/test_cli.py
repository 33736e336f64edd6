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
from hambench.cli import main

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
    assert src.expected_seconds(src.items()[0]) == pytest.approx(0.00119 * 34 ** 2.07, rel=1e-9)
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
    from hambench.store import open_store

    s = open_store(tmp_path / "q.zarr")[0]
    assert s.sources and all(p.startswith(str(tmp_path.resolve())) for p, _ in s.sources)


def test_dft_sources_advance_the_bar_per_item():
    from hambench.pipelines.driver import MAX_RANGE_ITEMS, _ranges

    assert _ranges(20, 1, 1) == [[k, k + 1] for k in range(20)]
    assert _ranges(200, 1) == [[a, min(200, a + 50)] for a in range(0, 200, 50)] and MAX_RANGE_ITEMS >= 50
