"""The fuzz and fault suite: every command, fed malformed input, refuses it in one line and touches nothing.

Each case states the command line, the damage done to a copy of a working world (:mod:`_faults`: a truth store,
predictions, a board with a recorded submission, a trained run, a built site) and the message expected. It
asserts exit code 1, exactly one line on stderr (``hambench: error: …`` holding the message), nothing on stdout,
and the world byte for byte as it was before the command: nothing written, nothing existing changed.

``CASES`` and ``PENDING_STORE_CASES`` (the cases of issue 30 items 1 and 2
(store integrity on read; the refusals of train, predict, score, equivariance, export and info), done in
parallel in hambench/store, models/run.py and app/cli.py) run together. A usage error (a flag out of its range)
exits 2, bad input 1.
"""

from __future__ import annotations

import re
import shlex
import shutil
from typing import NamedTuple

import pytest
from click.testing import CliRunner

import _faults as F
from _toy_model import register_toy
from hambench.app.cli import main

W = "{w}"


class Case(NamedTuple):
    id: str
    damage: str  # what was done to the world, in words
    apply: object  # f(world path)
    args: str  # the command line after `hambench`, {w} = the world folder
    message: str  # a fragment of the one error line
    code: int = 1  # the exit code: 1 bad input, 2 a usage error (a flag out of its range; DESIGN.md §8)

    @property
    def command(self) -> str:
        words = self.args.split()
        return " ".join(words[:2] if words[0] == "leaderboard" else words[:1])


S = f"leaderboard submit {W}/preds_beta.zarr --meta {W}/beta.yml --board {W}/board --no-plots"
B = f"leaderboard build --board {W}/board -o {W}/site2"
SUBMETA = f"{F.SUB}/meta.yml"
SCORES = f"{F.SUB}/scores.json"
RECORD = f"{F.SUB}/record.json"


def _h(value):
    return lambda d: d["metrics"].__setitem__("H_mae", value)


CASES = [
    # --- leaderboard submit: meta.yml -----------------------------------------------------------------------
    Case("submit-meta-alias-bomb", "meta.yml is a billion-laughs alias bomb", F.write("beta.yml", F.ALIAS_BOMB), S,
         "found the alias *a: YAML aliases are not accepted"),
    Case("submit-meta-deep", "meta.yml nests lists 200 deep", F.write("beta.yml", f"model: {F.nested(200)}\n"), S,
         "nested deeper than 64 levels"),
    Case("submit-meta-huge", "meta.yml is 2 MiB", F.write("beta.yml", "# x\n" * (1 << 19)), S,
         "2,097,152 bytes, more than the 1,048,576"),
    Case("submit-meta-binary", "meta.yml is binary", F.write("beta.yml", b"\xff\xfe\x00model"), S,
         "cannot read (UnicodeDecodeError"),
    Case("submit-meta-empty", "meta.yml is empty", F.write("beta.yml", ""), S,
         "expected a YAML mapping at the top level, found NoneType"),
    Case("submit-meta-list", "meta.yml is a list", F.write("beta.yml", "- a\n- b\n"), S, "found list"),
    Case("submit-meta-duplicate", "meta.yml names model twice", F.write("beta.yml", "model: a\nmodel: b\n"), S,
         "duplicate key 'model'"),
    Case("submit-meta-python-tag", "meta.yml asks PyYAML to run os.system",
         F.write("beta.yml", "model: !!python/object/apply:os.system ['touch pwned']\n"), S,
         "could not determine a constructor for the tag"),
    Case("submit-meta-complex-key", "meta.yml has a list as a key", F.write("beta.yml", "? [a, b]\n: c\n"), S,
         "a mapping key must be a plain value"),
    Case("submit-meta-unknown-key", "meta.yml has a key the schema lacks",
         F.yaml_edit("beta.yml", lambda d: d.__setitem__("gpu", "A100")), S, "unknown key 'gpu'"),
    Case("submit-meta-placeholder", "meta.yml keeps a template placeholder",
         F.yaml_edit("beta.yml", lambda d: d.__setitem__("license", "<MIT>")), S,
         "license: fill in the template's placeholder '<MIT>'"),
    Case("submit-meta-nan", "meta.yml states a NaN metric", F.yaml_edit("beta.yml", lambda d: d.__setitem__(
        "metrics", {"H_mae": float("nan")})), S, "metrics.H_mae: not a finite number"),
    Case("submit-meta-escape", "meta.yml's model climbs out of the board",
         F.yaml_edit("beta.yml", lambda d: d.__setitem__("model", "../../outside")), S, "is not a valid name"),
    Case("submit-meta-missing", "meta.yml does not exist", F.remove("beta.yml"), S, "beta.yml: no such file"),
    Case("submit-meta-folder", "meta.yml is a folder", F.both(F.remove("beta.yml"), F.copy("outside", "beta.yml")), S,
         "cannot read (IsADirectoryError"),
    Case("submit-unknown-dataset", "meta.yml names a dataset the board lacks",
         F.yaml_edit("beta.yml", lambda d: d.__setitem__("dataset", "qm7")), S, "dataset 'qm7' is not on the board"),
    Case("submit-typed-in-metric", "meta.yml states H_mae = 1e-4 meV",
         F.yaml_edit("beta.yml", lambda d: d.__setitem__("metrics", {"H_mae": 1e-4})), S,
         "stated H_mae = 0.0001 but hambench recomputes"),
    # --- leaderboard submit: predictions, claims, board -----------------------------------------------------
    Case("submit-preds-missing", "the prediction store does not exist", F.remove("preds_beta.zarr"), S,
         "no such prediction store"),
    Case("submit-preds-truth", "the truth store is given as predictions", F.nothing(),
         S.replace("preds_beta.zarr", "truth.zarr"), "not a prediction store"),
    Case("submit-preds-nan", "one predicted H element is NaN", F.zarr_set("preds_beta.zarr", "blocks/H", 7,
         float("nan")), S, "NaN"),
    Case("submit-claim-not-json", "--scores is not JSON", F.write("claim.json", "{H_mae: 1"),
         S + f" --scores {W}/claim.json", "claim.json: cannot read as JSON"),
    Case("submit-claim-lies", "--scores claims H_mae = 1e-4 meV", F.write("claim.json", '{"metrics": {"H_mae": 1e-4}}'),
         S + f" --scores {W}/claim.json", "claim.json: stated H_mae = 0.0001"),
    Case("submit-board-missing", "the board folder does not exist", F.remove("board"), S, "no such board folder"),
    Case("submit-board-no-datasets", "the board has no datasets.yml", F.remove("board/datasets.yml"), S,
         "missing: a board needs datasets.yml"),
    Case("submit-datasets-alias-bomb", "datasets.yml is an alias bomb", F.write("board/datasets.yml", F.ALIAS_BOMB),
         S, "YAML aliases are not accepted"),
    Case("submit-datasets-unknown-key", "datasets.yml has a key the schema lacks",
         F.yaml_edit("board/datasets.yml", lambda d: d["datasets"]["qm9"].__setitem__("typo", 1)), S,
         "datasets.qm9: unknown key 'typo'"),
    Case("submit-existing", "the model is already on the board (no --replace)", F.nothing(),
         S.replace("preds_beta", "preds").replace("beta.yml", "alpha.yml"), "already on the board; pass --replace"),
    Case("submit-link-out", "submissions/beta is a link out of the board",
         F.symlink("board/submissions/beta", "outside"), S, "is a symbolic link"),
    Case("submit-other-truth", "the board's dataset names another truth checksum",
         F.yaml_edit("board/datasets.yml", lambda d: d["datasets"]["qm9"].__setitem__("truth_checksum", "0" * 64)), S,
         "the board's dataset 'qm9' is 0000000000000000…"),
    Case("submit-other-kind", "the board's dataset holds crystals",
         F.yaml_edit("board/datasets.yml", lambda d: d["datasets"]["qm9"].__setitem__("kind", "crystal")), S,
         "predicts molecules, the board's dataset 'qm9' holds crystals"),
    Case("build-scores-edited", "scores.json's H_mae edited to 1e-4 meV", F.json_edit(SCORES, _h(1e-4)), B,
         "scores.json: changed after submit"),
    Case("build-scores-files-resealed", "scores.json edited, the record's file digests updated",
         F.both(F.json_edit(SCORES, _h(1e-4)), F.reseal(digest=False)), B,
         "record.json: its digest"),
    Case("build-scores-resealed", "scores.json's H_mae edited, the whole record recomputed",
         F.both(F.json_edit(SCORES, _h(1e-4)), F.reseal()), B,
         "metrics.H_mae = 0.0001 is not the mean"),
    Case("build-scores-forged", "every H MAE scaled by 1e-5 consistently, record recomputed; predictions given",
         F.both(F.json_edit(SCORES, F.forge_per_structure), F.reseal()), B + f" --predictions {W}",
         "but scoring the recorded predictions"),
    Case("build-scores-other-preds", "scores.json names other predictions, record digests recomputed",
         F.both(F.json_edit(SCORES, lambda d: d["predictions"].__setitem__("checksum", "1" * 64)), F.reseal()), B,
         "predictions.checksum 111111111111… is not the record's"),
    Case("build-meta-edited", "the submission's meta.yml edited",
         F.yaml_edit(SUBMETA, lambda d: d.__setitem__("parameters", 1)), B, "meta.yml: changed after submit"),
    Case("build-plot-added", "a plot added to the submission", F.write(f"{F.SUB}/plots/x.png", b"\x89PNG"), B,
         "plots/x.png: is not in the submission's record"),
    Case("build-scores-deleted", "scores.json deleted", F.remove(SCORES), B, "scores.json: recorded at submit but "
         "missing"),
    Case("build-record-deleted", "record.json deleted", F.remove(RECORD), B, "record.json: missing"),
    Case("build-record-garbage", "record.json is not JSON", F.write(RECORD, "{"), B,
         "record.json: cannot read as JSON"),
    Case("build-record-unknown-key", "record.json gains a key, digest recomputed",
         F.both(F.json_edit(RECORD, lambda d: d.__setitem__("signed_by", "me")), F.reseal(files=False)), B,
         "record.json: (top level): unknown key 'signed_by'"),
    Case("build-record-link", "scores.json replaced by a link to a copy",
         F.both(F.copy(SCORES, "outside/scores.json"), F.remove(SCORES), F.symlink(SCORES, "outside/scores.json")),
         B, "scores.json: is a symbolic link"),
    Case("build-moved", "the submission copied under another model's folder",
         F.copy(F.SUB, "board/submissions/gamma/qm9"), B, "says model 'alpha', dataset 'qm9' but lies in "
         "submissions/gamma"),
    Case("build-truth-changed", "datasets.yml now names another truth",
         F.yaml_edit("board/datasets.yml", lambda d: d["datasets"]["qm9"].__setitem__("truth_checksum", "2" * 64)),
         B, "the board's dataset 'qm9' is 222222222222… (the dataset's truth changed since: resubmit)"),
    Case("build-options-changed", "datasets.yml now scores SCF on 1 molecule",
         F.yaml_edit("board/datasets.yml", lambda d: d["datasets"]["qm9"].__setitem__("score", {"scf": 1})), B,
         'scored with options {}, the board\'s dataset \'qm9\' scores with {"scf": 1}'),
    Case("build-datasets-alias", "datasets.yml uses one harmless alias",
         F.write("board/datasets.yml", "datasets_version: 1\nx: &t demo\ntitle: *t\ndatasets: {}\n"), B,
         "YAML aliases are not accepted"),
    # --- leaderboard build: the output folder and the options -----------------------------------------------
    Case("build-out-unrelated", "-o is a folder of someone's files", F.write("site2/thesis.tex", "years of work"), B,
         "is a folder that is neither empty nor a site `hambench leaderboard build` made"),
    Case("build-out-file", "-o is a file", F.write("site2", "a file"), B, "exists and is not a folder; pass "
         "--overwrite"),
    Case("build-out-link", "-o is a link to a folder", F.symlink("site2", "outside"), B, "exists and is not a folder"),
    Case("build-out-board", "-o is the board itself, with --overwrite", F.nothing(),
         f"leaderboard build --board {W}/board -o {W}/board --overwrite", "-o would replace"),
    Case("build-out-parent", "-o holds the board, with --overwrite", F.nothing(),
         f"leaderboard build --board {W}/board -o {W} --overwrite", "-o would replace"),
    Case("build-out-truth", "-o is the truth store, with --overwrite", F.nothing(),
         f"leaderboard build --board {W}/board -o {W}/truth.zarr --overwrite", "-o would replace"),
    Case("build-out-submissions", "-o lies in the board's submissions/", F.nothing(),
         f"leaderboard build --board {W}/board -o {W}/board/submissions/site", "lies inside"),
    Case("build-predictions-missing", "--predictions names no folder", F.nothing(), B + f" --predictions {W}/nope",
         "nope: no such folder (--predictions)"),
    Case("build-strict", "--strict without the recorded predictions at hand", F.nothing(),
         B + f" --predictions {W}/outside --strict", "--strict: the recorded predictions preds.zarr are not in"),
    Case("build-other-preds", "--predictions holds another store under the recorded name",
         F.copy("preds_beta.zarr", "other/preds.zarr"), B + f" --predictions {W}/other",
         "is not the one recorded for alpha on qm9"),
    Case("build-board-missing", "the board folder does not exist", F.remove("board"), B, "no such board folder"),
    # --- leaderboard list and init ----------------------------------------------------------------------------
    Case("list-scores-edited", "scores.json's H_mae edited to 1e-4 meV", F.json_edit(SCORES, _h(1e-4)),
         f"leaderboard list --board {W}/board", "scores.json: changed after submit"),
    Case("list-record-edited", "record.json's truth checksum edited",
         F.json_edit(RECORD, lambda d: d.__setitem__("truth_checksum", "3" * 64)),
         f"leaderboard list --board {W}/board", "record.json: its digest"),
    Case("init-truth-missing", "--truth does not exist", F.nothing(),
         f"leaderboard init --board {W}/b2 --dataset d --truth {W}/nope.zarr", "nope.zarr"),
    Case("init-bad-name", "--dataset climbs out", F.nothing(),
         f"leaderboard init --board {W}/b2 --dataset ../d --truth {W}/truth.zarr", "dataset '../d' is not a valid name"),
    Case("init-board-file", "--board is a file", F.write("b2", "x"),
         f"leaderboard init --board {W}/b2 --dataset d --truth {W}/truth.zarr", "--board is a file"),
    Case("init-other-truth", "the dataset is on the board for another truth",
         F.yaml_edit("board/datasets.yml", lambda d: d["datasets"]["qm9"].__setitem__("truth_checksum", "4" * 64)),
         f"leaderboard init --board {W}/board --dataset qm9 --truth {W}/truth.zarr",
         "already on this board for another truth store or split"),
    Case("init-datasets-alias-bomb", "the board's datasets.yml is an alias bomb",
         F.write("board/datasets.yml", F.ALIAS_BOMB),
         f"leaderboard init --board {W}/board --dataset d2 --truth {W}/truth.zarr", "YAML aliases are not accepted"),
    # --- train: configs (hambench.config's bounded YAML) and runs -------------------------------------------
    Case("train-config-alias-bomb", "--config is an alias bomb", F.write("bomb.yaml", F.ALIAS_BOMB),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --config {W}/bomb.yaml", "expands to more than 100,000 values"),
    Case("train-config-recursive", "--config holds a recursive alias", F.write("loop.yaml", "model: &m\n  x: *m\n"),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --config {W}/loop.yaml", "refers to a node that contains it"),
    Case("train-config-deep", "--config nests 200 deep", F.write("deep.yaml", f"model: {F.nested(200)}\n"),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --config {W}/deep.yaml", "nested deeper than 64 levels"),
    Case("train-config-unknown", "--config has an unknown key", F.write("c.yaml", "model: {wings: 2}\n"),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --config {W}/c.yaml", "unknown key 'model.wings'"),
    Case("train-config-missing", "--config does not exist", F.nothing(),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --config {W}/none.yaml", "config file not found"),
    Case("train-config-list", "--config is a list", F.write("c.yaml", "- 1\n"),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --config {W}/c.yaml", "the top level must be a mapping"),
    Case("train-set-bad", "--set without '='", F.nothing(), f"train toy --data {W}/truth.zarr -o {W}/run2 --set lr",
         "'lr' is not KEY=VALUE"),
    Case("train-unknown-model", "an unknown model", F.nothing(), f"train nope --data {W}/truth.zarr -o {W}/run2",
         "unknown model"),
    Case("train-unknown-preset", "an unknown preset", F.nothing(),
         f"train toy --data {W}/truth.zarr -o {W}/run2 --preset huge", "unknown preset 'huge'"),
    Case("train-existing-run", "-o holds a run (no --resume)", F.nothing(),
         f"train toy --data {W}/truth.zarr -o {W}/run", "holds a run already"),
    Case("train-resume-nothing", "--resume in an empty folder", F.nothing(),
         f"train toy --data {W}/truth.zarr -o {W}/outside --resume", "--resume: no last.pt"),
    Case("train-data-missing", "--data does not exist", F.nothing(), f"train toy --data {W}/none.zarr -o {W}/run2",
         "none.zarr"),
    # --- predict, score, info, prepare ------------------------------------------------------------------------
    Case("predict-out-exists", "-o exists (no --overwrite)", F.nothing(),
         f"predict {W}/run --data {W}/truth.zarr -o {W}/preds.zarr", "exists already"),
    Case("predict-structures-garbage", "--structures is not a structure file", F.write("s.xyz", "not\nxyz\n"),
         f"predict {W}/run --structures {W}/s.xyz -o {W}/p2.zarr", "ASE cannot read it"),
    Case("predict-structures-missing", "--structures does not exist", F.nothing(),
         f"predict {W}/run --structures {W}/none.xyz -o {W}/p2.zarr", "no such structure file"),
    Case("score-preds-missing", "the prediction store does not exist", F.nothing(), f"score {W}/none.zarr",
         "no such"),
    Case("score-preds-truth", "the truth store is given as predictions", F.nothing(), f"score {W}/truth.zarr",
         "not a prediction store"),
    Case("score-workers-0", "--workers 0", F.nothing(), f"score {W}/preds.zarr --workers 0",
         "'--workers': 0 is not in the range x>=1", 2),
    Case("info-missing", "the store does not exist", F.nothing(), f"info {W}/none.zarr", "no such store"),
    Case("prepare-unknown-source", "an unknown source", F.nothing(), f"prepare --source nope/x -o {W}/o.zarr",
         "unknown source 'nope/x'"),
    Case("prepare-foreign-option", "an option the source lacks", F.nothing(),
         f"prepare --source synthetic/random --kmesh 2x2x1 -o {W}/o.zarr", "has no option --kmesh"),
    # --- store and checkpoint readers (hambench/store, models/run.py), refusals already in place -------------
    Case("info-zarr-json-garbage", "the store's zarr.json is not JSON", F.write("truth.zarr/zarr.json", "{"),
         f"info {W}/truth.zarr", "truth.zarr"),
    Case("info-not-a-store", "an empty folder", F.nothing(), f"info {W}/outside", "outside"),
    Case("info-a-file", "a file instead of a store", F.nothing(), f"info {W}/structures.xyz", "structures.xyz"),
    Case("info-version", "the store says version 99", F.json_edit("truth.zarr/zarr.json", lambda d: d["attributes"]
         .__setitem__("hambench_store_version", 99)), f"info {W}/truth.zarr", "version"),
    Case("info-array-missing", "the atoms/Z array deleted", F.remove("truth.zarr/atoms/Z"),
         f"info {W}/truth.zarr", "atoms/Z"),
    Case("score-reference-garbage", "--reference is not JSON", F.write("ref.json", "{"),
         f"score {W}/preds.zarr --reference {W}/ref.json", "ref.json"),
    Case("score-kpath-missing", "--kpath does not exist", F.nothing(), f"score {W}/preds.zarr --kpath {W}/none",
         "no such k-path file"),
    Case("score-truth-missing", "--truth does not exist", F.nothing(), f"score {W}/preds.zarr --truth {W}/none.zarr",
         "none.zarr"),
    Case("predict-checkpoint-garbage", "best.pt is not a checkpoint", F.write("run/best.pt", b"garbage"),
         f"predict {W}/run --data {W}/truth.zarr -o {W}/p2.zarr", "best.pt"),
    Case("predict-checkpoint-truncated", "best.pt cut in half", F.truncate("run/best.pt"),
         f"predict {W}/run --data {W}/truth.zarr -o {W}/p2.zarr", "best.pt"),
    Case("predict-checkpoint-missing", "the checkpoint does not exist", F.nothing(),
         f"predict {W}/none.pt --data {W}/truth.zarr -o {W}/p2.zarr", "none.pt"),
    Case("predict-data-missing", "--data does not exist", F.nothing(),
         f"predict {W}/run --data {W}/none.zarr -o {W}/p2.zarr", "none.zarr"),
    Case("predict-split-unknown", "--split names no split of the store", F.nothing(),
         f"predict {W}/run --data {W}/truth.zarr --split nope:test -o {W}/p2.zarr", "nope"),
    Case("equivariance-checkpoint-garbage", "best.pt is not a checkpoint", F.write("run/best.pt", b"garbage"),
         f"equivariance {W}/run --data {W}/truth.zarr", "best.pt"),
    Case("equivariance-data-missing", "--data does not exist", F.nothing(), f"equivariance {W}/run --data {W}/none.zarr",
         "none.zarr"),
    Case("equivariance-checkpoint-missing", "the checkpoint does not exist", F.nothing(),
         f"equivariance {W}/none.pt --data {W}/truth.zarr", "none.pt"),
    Case("train-resume-garbage", "last.pt is not a checkpoint", F.write("run/last.pt", b"garbage"),
         f"train toy --data {W}/truth.zarr -o {W}/run --resume", "last.pt"),
    Case("export-store-missing", "the store does not exist", F.nothing(), f"export {W}/none.zarr -o {W}/ex",
         "none.zarr"),
    Case("export-out-unrelated", "-o is a folder of someone's files", F.write("ex/thesis.tex", "years of work"),
         f"export {W}/truth.zarr -o {W}/ex", "ex"),
]

#: cases waiting for issue 30 items 1-2 (store integrity on read; train/predict/score/equivariance/export/info
#: refusals). Not run on this branch; see the module docstring.
PENDING_STORE_CASES = [
    Case("submit-truth-edited", "one H element of the truth store changed since prediction",
         F.zarr_set("truth.zarr", "blocks/H", 3, 1.0), S, "truth.zarr"),
    Case("score-truth-edited", "one H element of --truth changed since prediction",
         F.zarr_set("truth.zarr", "blocks/H", 3, 1.0), f"score {W}/preds.zarr --truth {W}/truth.zarr", "truth.zarr"),
    Case("info-chunk-deleted", "the H chunk deleted", F.remove("truth.zarr/blocks/H/c/0"),
         f"info {W}/truth.zarr --checksum", "blocks/H"),
    Case("info-chunk-truncated", "the H chunk cut in half", F.truncate("truth.zarr/blocks/H/c/0"),
         f"info {W}/truth.zarr --checksum", "blocks/H"),
    Case("score-preds-chunk-truncated", "the predictions' H chunk cut in half", F.truncate("preds.zarr/blocks/H/c/0"),
         f"score {W}/preds.zarr", "preds.zarr"),
    Case("submit-preds-chunk-truncated", "the predictions' H chunk cut in half",
         F.truncate("preds_beta.zarr/blocks/H/c/0"), S, "preds_beta.zarr"),
    Case("predict-data-chunk-truncated", "--data's atoms/pos chunk cut in half", F.truncate("truth.zarr/atoms/pos/c/0/0"),
         f"predict {W}/run --data {W}/truth.zarr -o {W}/p2.zarr", "truth.zarr"),
    Case("train-data-is-preds", "--data is a prediction store", F.nothing(),
         f"train toy --data {W}/preds.zarr -o {W}/run2", "preds.zarr"),
    Case("train-data-chunk-truncated", "--data's H chunk cut in half", F.truncate("truth.zarr/blocks/H/c/0"),
         f"train toy --data {W}/truth.zarr -o {W}/run2", "truth.zarr"),
    Case("export-chunk-truncated", "the store's H chunk cut in half", F.truncate("truth.zarr/blocks/H/c/0"),
         f"export {W}/truth.zarr -o {W}/ex", "truth.zarr"),
]

ENABLED = CASES + PENDING_STORE_CASES  # the store cases: issue 30 items 1-2 (integrity on read, refusals)


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_store):
    from hambench.models import registry

    register_toy(tmp_path_factory.mktemp("toy"))
    yield F.build_world(tmp_path_factory.mktemp("faults") / "world", demo_store)
    registry._REGISTRY.pop("toy", None)


def test_the_suite_is_large_and_named():
    ids = [c.id for c in CASES + PENDING_STORE_CASES]
    assert len(set(ids)) == len(ids) and len(CASES) >= 60
    assert all(c.message and c.damage for c in CASES + PENDING_STORE_CASES)


@pytest.mark.parametrize("case", ENABLED, ids=[c.id for c in ENABLED])
def test_malformed_input_is_refused_in_one_line_touching_nothing(case, world, tmp_path, monkeypatch):
    w = tmp_path / "w"
    shutil.copytree(world, w, symlinks=True)
    case.apply(w)
    before = F.snapshot(w)
    monkeypatch.chdir(w)
    r = CliRunner().invoke(main, shlex.split(case.args.replace(W, str(w))))
    lines = r.stderr.splitlines()
    assert r.exit_code == case.code, (r.exit_code, r.output)
    assert len(lines) == 1 and lines[0].startswith("hambench: error: "), r.stderr
    assert "internal error" not in lines[0] and case.message in lines[0], lines[0]
    assert r.stdout == "", r.stdout
    assert F.changes(before, F.snapshot(w)) == []
    assert not re.search(r"Traceback", r.output)
