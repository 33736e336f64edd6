"""StoreAttrs: the dict a source declares comes back exactly (keys, values, order); bad values are one line."""

import pytest

from hambench.store._meta import StoreAttrs
from hambench.errors import InputError


def test_round_trip_keeps_keys_values_and_order():
    d = {"kind": "crystal", "spinful": True, "dft": {"code": "OpenMX", "basis": {"C": "C6.0-s2p2d1"}},
         "geometry": "slab", "constants": "CODATA2018", "splits": ["train", "test"]}
    a = StoreAttrs.from_dict(d)
    assert a.to_dict() == d and list(a.to_dict()) == list(d)
    assert a.kind == "crystal" and a.spinful is True and a.splits == ("train", "test") and a.extra == {"geometry": "slab"}
    out = a.to_dict()
    out["dft"]["code"] = "changed"  # a deep copy: edits do not reach the attributes
    assert a.to_dict()["dft"]["code"] == "OpenMX"
    assert list(StoreAttrs(kind="molecule").to_dict()) == ["kind", "dft", "constants"]


@pytest.mark.parametrize("d,match", [
    ({"dft": {}}, "lack 'kind'"),
    ({"kind": "liquid"}, "kind must be one of crystal, molecule"),
    ({"kind": "crystal", "spinful": "yes"}, "spinful must be true or false"),
    ({"kind": "crystal", "dft": "OpenMX"}, "dft must be a mapping"),
    ({"kind": "crystal", "constants": 2018}, "constants must be a string"),
    ({"kind": "crystal", "splits": "train"}, "splits must be a list of names"),
])
def test_bad_attributes_are_one_line(d, match):
    with pytest.raises(InputError, match=match) as e:
        StoreAttrs.from_dict(d)
    assert "\n" not in str(e.value)
