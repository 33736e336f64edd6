"""The README's examples run as written, in order (issue 21 §2).

Every ```bash and ```python block carries a marker comment on the line right above it (blank lines allowed):

* ``<!-- readme-test -->``: run it as written;
* ``<!-- readme-test: A => B; C => D -->``: run it with these literal substitutions (a slow DFT example at its
  smallest settings); each A must occur in the block;
* ``<!-- readme-test: skip (why) -->``: not run, the reason is stated in the README source.

A block without a marker fails the test (```text blocks show output and are not code). The blocks run in order
(bash with ``set -euo pipefail``, Python with the venv's interpreter) in one temporary folder laid out like the
repository root: ``../shared`` is the real shared folder (read only), and ``hambench/data/demo_qm9`` is a copy of
the shipped demo cache. Every ``hambench prepare|info|export`` example
of ``--help`` must appear in a block that runs, so it runs too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hambench.app.cli import main
from hambench.testing import realdata_path, require_realdata

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test(?::\s*(?P<arg>.*?))?\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>bash|python)\s*$")


def readme_blocks(text: str) -> list[dict]:
    """Every ```bash/```python block with its marker: {"line", "lang", "code", "mode": run|skip|None, "subs",
    "reason"}."""
    lines = text.splitlines()
    out = []
    k = 0
    while k < len(lines):
        fence = FENCE.match(lines[k])
        if not fence:
            k += 1
            continue
        start = k
        end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith("```"))
        code = "\n".join(lines[start + 1:end]) + "\n"
        above = start - 1
        while above >= 0 and not lines[above].strip():
            above -= 1
        m = MARKER.match(lines[above]) if above >= 0 else None
        block = {"line": start + 1, "lang": fence.group("lang"), "code": code, "mode": None, "subs": [], "reason": ""}
        if m:
            arg = (m.group("arg") or "").strip()
            if arg.startswith("skip"):
                block.update(mode="skip", reason=arg[4:].strip(" ()"))
            else:
                block["mode"] = "run"
                for sub in filter(None, (x.strip() for x in arg.split(";"))):
                    a, sep, b = sub.partition("=>")
                    assert sep, f"README line {start}: substitution {sub!r} is not 'A => B'"
                    block["subs"].append((a.strip(), b.strip()))
        out.append(block)
        k = end + 1
    return out


def runnable(block) -> str:
    code = block["code"]
    for a, b in block["subs"]:
        assert a in code, f"README line {block['line']}: {a!r} is not in the block it is meant to shrink"
        code = code.replace(a, b)
    return code


def test_marker_parsing():
    text = ("x\n<!-- readme-test -->\n```bash\necho a\n```\n\n<!-- readme-test: --n 20 => --n 1; -w 2 => -w 1 -->\n\n"
            "```bash\nrun --n 20 -w 2\n```\n<!-- readme-test: skip (slow) -->\n```bash\nsleep 1\n```\n```bash\nb\n```\n")
    b = readme_blocks(text)
    assert [x["mode"] for x in b] == ["run", "run", "skip", None]
    assert runnable(b[1]) == "run --n 1 -w 1\n" and b[2]["reason"] == "slow"
    with pytest.raises(AssertionError, match="not in the block"):
        runnable({"line": 1, "code": "x\n", "subs": [("y", "z")]})


def test_help_examples_are_in_readme_blocks_that_run():
    ran = "".join(b["code"] for b in readme_blocks(README.read_text()) if b["mode"] == "run")
    for command in ("prepare", "info", "export"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        examples = [line.strip() for line in text.split("Example")[1].split("Options:")[0].splitlines()
                    if line.strip().startswith("hambench ")]
        assert examples, command
        for ex in examples:
            assert ex in ran, f"`hambench {command} --help` example not run by the README test: {ex}"


def test_every_readme_block_is_run_or_says_why_not():
    blocks = readme_blocks(README.read_text())
    unmarked = [b["line"] for b in blocks if b["mode"] is None]
    assert not unmarked, f"README code blocks without a readme-test marker at lines {unmarked}"
    skipped = [b for b in blocks if b["mode"] == "skip"]
    assert all(b["reason"] for b in skipped)
    assert len(skipped) <= 1, [b["line"] for b in skipped]  # only the set-up block (CI runs it itself)


@pytest.mark.slow
def test_readme_examples_run_in_order(tmp_path):
    """Every README block, in order, in one folder (the DFT ones at their smallest settings)."""
    require_realdata()
    blocks = [b for b in readme_blocks(README.read_text()) if b["mode"] == "run"]
    assert len(blocks) >= 10
    work = tmp_path / "repo"
    (work / "hambench" / "data").mkdir(parents=True)
    shutil.copytree(ROOT / "hambench" / "data" / "demo_qm9", work / "hambench" / "data" / "demo_qm9")
    for ref in ("deephe3_ref", "airs_ref"):  # the reference codes' small checkpoints (import-checkpoint)
        shutil.copytree(ROOT / "tests" / "data" / ref, work / "tests" / "data" / ref)
    os.symlink(realdata_path().parent, tmp_path / "shared")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("HAMBENCH_REALDATA", None)
    for b in blocks:
        if b["lang"] == "python":
            (tmp_path / "block.py").write_text(runnable(b))
            cmd = [sys.executable, str(tmp_path / "block.py")]
        else:
            cmd = ["bash", "-c", "set -euo pipefail\n" + runnable(b)]
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README block at line {b['line']} failed:\n{b['code']}\n{r.stdout[-3000:]}" \
                                  f"\n{r.stderr[-3000:]}"
    # what the examples promised is there
    for name in ("demo.zarr", "mote2.zarr", "graphene.zarr", "graphene_back.zarr", "qm9.zarr", "graphene_pbe.zarr",
                 "preds.zarr", "new.zarr", "noise.zarr"):
        assert (work / name / "zarr.json").is_file(), name
    for name in ("runs/e3/best.pt", "runs/mote2/best.pt", "runs/tg-grad/best.pt", "runs/hs/best.pt", "scores.json",
                 "myboard/datasets.yml", "myboard/submissions/noise-1mev/demo/scores.json", "site/index.html"):
        assert (work / name).is_file(), name
    assert (work / "graphene_deeph" / "export.json").is_file() and (work / "qm9.raw").is_dir()
    from hambench.store._store import open_store

    back, orig = open_store(work / "graphene_back.zarr"), open_store(work / "graphene.zarr")
    assert len(back) == len(orig) == 3 and [back[k].parent for k in range(3)] == [-1, 0, 0]
