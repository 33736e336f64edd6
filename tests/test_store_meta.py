"""StoreMeta: a store's attributes as one frozen value, parsed once on open; the dict round trip is exact (keys,
values, order), so the store's bytes do not depend on it; a bad attribute is one line naming store and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hambench.errors import InputError, StoreError, StoreMetaError
from hambench.store import ROWS, StoreAttrs, StoreCounts, StoreMeta, open_store

FIELD_KEYS = set(StoreMeta._KEYS)
names = st.text("abcdefghij-_", min_size=1, max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) | names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=6)
#: counts as the writer writes them (in the order of ROWS; a StoreCounts writes that order)
counts = st.tuples(*[st.integers(0, 10**9)] * len(ROWS)).map(lambda v: dict(zip(ROWS, v)))
species = st.dictionaries(st.integers(1, 118).map(str), st.lists(st.integers(0, 4), min_size=1, max_size=5),
                          min_size=1, max_size=4)
optional = {
    "dft": st.dictionaries(names, json_values, max_size=3),
    "constants": names,
    "splits": st.dictionaries(names, st.lists(names, max_size=3), max_size=2),
    "source": st.none() | st.dictionaries(names, json_values, max_size=3),
    "created_by": st.dictionaries(names, names, max_size=2),
    "excluded": st.lists(st.fixed_dictionaries({"item": names, "reason": names}), max_size=2),
    "hambench_predictions_version": st.integers(1, 3),
    "truth": st.none() | st.fixed_dictionaries({"path": names, "checksum": names, "store_version": st.just(1)}),
    "model": st.dictionaries(names, json_values, max_size=2),
    "split": st.none() | names.map(lambda n: f"{n}:test"),
    "content_checksum": st.fixed_dictionaries({"algorithm": names, "sha256": names, "fingerprint": names}),
}


@st.composite
def store_attrs(draw) -> dict:
    """A valid attribute dict as a writer might have written it: required keys, some optional ones, extra keys
    that are no field, in any order."""
    d = {"hambench_store_version": 1, "units": {"energy": "eV", "length": "Å"},
         "orbital_convention": "hambench-real-sh-v1", "kind": draw(st.sampled_from(["crystal", "molecule"])),
         "spinful": draw(st.booleans()), "species": draw(species), "counts": draw(counts)}
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        d[key] = draw(optional[key])
    extra = draw(st.dictionaries(names.filter(lambda k: k not in FIELD_KEYS), json_values, max_size=3))
    d.update(extra)
    order = draw(st.permutations(list(d)))
    return json.loads(json.dumps({k: d[k] for k in order}))  # as read back from zarr.json


@settings(max_examples=200, deadline=None)
@given(store_attrs())
def test_round_trip_is_exact(d):
    meta = StoreMeta.from_dict(d, where="x.zarr")
    out = meta.to_dict()
    assert out == d and list(out) == list(d)
    assert json.dumps(out) == json.dumps(d)  # the bytes the writer writes
    assert StoreMeta.from_dict(out) == meta
    assert isinstance(meta.counts, StoreCounts) and meta.counts.to_dict() == d["counts"]
    assert all(isinstance(z, int) and isinstance(s, tuple) for z, s in meta.species.items())
    assert set(meta.extra) == set(d) - FIELD_KEYS


@settings(max_examples=50, deadline=None)
@given(store_attrs())
def test_edits_of_the_dicts_do_not_reach_the_value(d):
    meta = StoreMeta.from_dict(d)
    out = meta.to_dict()
    out["species"].clear()
    d["species"].clear()
    assert meta.species and meta.to_dict()["species"]


def _valid() -> dict:
    return {"hambench_store_version": 1, "units": {"energy": "eV", "length": "Å"},
            "orbital_convention": "hambench-real-sh-v1", "kind": "molecule", "spinful": False,
            "species": {"1": [0, 0, 1], "8": [0, 0, 0, 1, 1, 2]},
            "counts": {"structures": 1, "atoms": 3, "edges": 9, "H": 10, "S": 10, "T": 4}}


@pytest.mark.parametrize("edit, match", [
    ({"hambench_store_version": 2}, "x.zarr: store version 2, this hambench reads version 1"),
    ({"kind": "liquid"}, "x.zarr: store attribute kind must be one of crystal, molecule, got 'liquid'"),
    ({"spinful": "no"}, "x.zarr: store attribute spinful must be true or false"),
    ({"spinful": None}, "x.zarr: store attribute spinful must be true or false"),
    ({"species": {"H": [0]}}, "x.zarr: store attribute species has key 'H', not an atomic number"),
    ({"species": {"1": "spd"}}, "x.zarr: store attribute species of Z=1 must be a list"),
    ({"counts": {"structures": 1}}, "x.zarr: store attribute counts must have the keys"),
    ({"counts": {**_valid()["counts"], "H": -1}}, "x.zarr: store attribute counts must not be negative"),
    ({"splits": {"random": "train"}}, "x.zarr: store attribute splits must map split names to lists of labels"),
    ({"orbital_convention": "other"}, "x.zarr: orbital convention 'other', expected"),
    ({"units": None}, "x.zarr: store attribute units must be a mapping"),
    ({"split": 3}, "x.zarr: store attribute split must be NAME:SUBSET or null"),
], ids=["version", "kind", "spinful", "spinful-none", "species-key", "species-shells", "counts-keys",
        "counts-negative", "splits", "convention", "units", "split"])
def test_bad_attribute_names_store_and_field(edit, match):
    with pytest.raises(StoreMetaError, match=match) as e:
        StoreMeta.from_dict({**_valid(), **edit}, where="x.zarr")
    assert isinstance(e.value, StoreError) and isinstance(e.value, InputError) and "\n" not in str(e.value)


@pytest.mark.parametrize("key, match", [
    ("hambench_store_version", "not a hambench store"),
    ("counts", "missing attribute 'counts'"),
    ("species", "missing attribute 'species'"),
])
def test_missing_attribute(key, match):
    d = _valid()
    del d[key]
    with pytest.raises(StoreMetaError, match=f"x.zarr: {match}"):
        StoreMeta.from_dict(d, where="x.zarr")


def test_another_version_is_named_before_missing_fields():
    with pytest.raises(StoreError, match="store version 9"):
        StoreMeta.from_dict({"hambench_store_version": 9}, where="x.zarr")


def test_direct_construction_validates_and_writes_its_fields():
    meta = StoreMeta(version=1, units={"energy": "eV", "length": "Å"}, orbital_convention="hambench-real-sh-v1",
                     kind="crystal", spinful=True, species={6: [0, 0, 1]}, counts=StoreCounts(1, 2, 4, 8, 4, 2))
    d = meta.to_dict()
    assert list(d) == ["hambench_store_version", "units", "orbital_convention", "kind", "spinful", "species",
                       "counts"]  # fields at their defaults are not written (and read back as those defaults)
    assert d["species"] == {"6": [0, 0, 1]} and StoreMeta.from_dict(d) == meta
    with pytest.raises(StoreMetaError, match="store attributes kind are fields, not extra keys"):
        StoreAttrs(kind="crystal", extra={"kind": "x"})


def test_an_open_store_parses_once(tmp_path):
    from hambench.pipelines import prepare

    out = tmp_path / "s.zarr"
    prepare("synthetic/random", None, out, quiet=True, count=2, augment=1, seed=1)
    store = open_store(out)
    raw = json.loads((out / "zarr.json").read_text())["attributes"]
    assert store.meta == StoreMeta.from_dict(raw) and store.attrs == raw and list(store.attrs) == list(raw)
    assert store.meta.counts.structures == len(store) == 4
    assert store.meta.splits == {name: tuple(labels) for name, labels in raw["splits"].items()} != {}
    assert store.kind == store.meta.kind and store.layout.species == {z: list(s) for z, s in store.meta.species.items()}
    assert store.meta.source["name"] == "synthetic/random" and store.meta.extra["zero_filled_edges"] == 0
