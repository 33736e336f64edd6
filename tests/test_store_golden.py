"""Byte identity of prepared stores against digests recorded with the code before the driver's rewrite (issue 20).

Every chunk/shard file of a store is compared by sha256; every ``zarr.json`` is compared after dropping the
attributes that name where and with what version it was made (``source.input``, ``created_by``).

The digests were produced by running this file as a script with the pristine checkout's interpreter::

    /work/seedrun/.venv/bin/python tests/test_store_golden.py   # prints GOLDEN as JSON
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

#: (name, source, realdata fixture or None, prepare options)
CASES = [
    ("synthetic_aug", "synthetic/random", None, {"count": 6, "augment": 2, "seed": 5}),
    ("synthetic_aug_w2", "synthetic/random", None, {"count": 6, "augment": 2, "seed": 5, "workers": 2}),
    ("deeph_legacy_aug", "deeph/folder", "deeph_legacy_MoTe2", {"augment": 1, "seed": 4}),
    ("deeph_dock", "deeph/folder", "deeph_new_MoTe2", {}),
    ("openmx_graphene", "openmx/scfout", "openmx_graphene_scfout", {}),
]


def _canonical_meta(raw: bytes) -> bytes:
    meta = json.loads(raw)
    attrs = meta.get("attributes")
    if isinstance(attrs, dict):
        attrs.pop("created_by", None)
        if isinstance(attrs.get("source"), dict):
            attrs["source"].pop("input", None)
    return json.dumps(meta, sort_keys=True).encode()


def store_digest(path: Path) -> dict[str, str]:
    """sha256 of every file of a store (metadata canonicalised, volatile attributes removed), by relative path."""
    out = {}
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        raw = f.read_bytes()
        if f.name == "zarr.json":
            raw = _canonical_meta(raw)
        out[str(f.relative_to(path))] = hashlib.sha256(raw).hexdigest()
    return out


INPUTS = Path("/tmp/hambench_golden_inputs")


def _realdata(name):
    from hambench.testing import realdata_path

    return realdata_path(name)


def make(case, where: Path) -> Path:
    from hambench.pipelines import prepare

    name, source, fixture, opts = case
    inp = None
    if fixture is not None:
        # stores record their input files' paths (structures/sources): one fixed place, whatever the checkout
        inp = INPUTS / fixture
        if not (inp / ".complete").exists():
            tmp = Path(tempfile.mkdtemp(dir=INPUTS.parent))
            shutil.copytree(_realdata(fixture), tmp / fixture)
            INPUTS.mkdir(exist_ok=True)
            try:
                (tmp / fixture).rename(inp)
            except OSError:
                pass  # another run put it there first
            (inp / ".complete").touch()
            shutil.rmtree(tmp, ignore_errors=True)
    out = where / f"{name}.zarr"
    prepare(source, inp, out, quiet=True, **opts)
    return out


GOLDEN: dict[str, dict[str, str]] = {
 "deeph_dock": {
  "atoms/Z/c/0": "ab78d003eb8194fe73518fea5070ea7f3c4205d05ff3da99cc3950303c93d1a6",
  "atoms/Z/zarr.json": "3d66512a8bbb059599e1f6ac0f11f52819e9d1abd3cafb4ac27949c00591f3f0",
  "atoms/pos/c/0/0": "6d6f39e546ff7dd771cca6489a6bfa30053f22c3d33316a343534798f105f9cc",
  "atoms/pos/zarr.json": "ae3b80640a020dfaf82c2101998ddb2b15ba7bb7bb7556c183ffb84a58e805f4",
  "atoms/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "blocks/H/c/0": "32e60b6265f20d9c641d4e9d054dd98b98e788bd6099973bd73d7c4e62a0d230",
  "blocks/H/zarr.json": "5ddefdbdad2d3b1d97684106795d8b07bdb9ebeda9f29e540137b3f6383b264b",
  "blocks/S/c/0": "b69867fce470cad53489236a0cdd60a53b3d25490cc2ce8b77a584fce7ea34f1",
  "blocks/S/zarr.json": "5ddefdbdad2d3b1d97684106795d8b07bdb9ebeda9f29e540137b3f6383b264b",
  "blocks/T/c/0": "202221cff826db4bd67381ad226b778e02ebf7e1202549e5af8748ec40f06195",
  "blocks/T/zarr.json": "42252e1c2ad2bf1e8c099c42a80f92588c6fc7da6b4b8e85a6562ce8831730fe",
  "blocks/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "edges/H_ptr/c/0": "9282fb457955d41476ba967663984f138fcd1c1ba96ed6dd08a389f87cf8ffc0",
  "edges/H_ptr/zarr.json": "8dd03f8eee8ebb00f46db9468d29c2c34e2ca4ed032c568cc460f8e663bb83e8",
  "edges/S_ptr/c/0": "9282fb457955d41476ba967663984f138fcd1c1ba96ed6dd08a389f87cf8ffc0",
  "edges/S_ptr/zarr.json": "8dd03f8eee8ebb00f46db9468d29c2c34e2ca4ed032c568cc460f8e663bb83e8",
  "edges/T_ptr/c/0": "08fb30bb505ce874907fab3d1fe5184dd585b623a4101b31b56016c2149b77f2",
  "edges/T_ptr/zarr.json": "8dd03f8eee8ebb00f46db9468d29c2c34e2ca4ed032c568cc460f8e663bb83e8",
  "edges/dst/c/0": "f55add50ca3991a5470f332730a7c86d46fd0d380a9b6afef8185ee83978228b",
  "edges/dst/zarr.json": "1ffc9c37d7de6a032e1ba741ec11904ced032cc04002ff322b0f167af06a8486",
  "edges/shift/c/0/0": "63300d7a70f8c5c4e8a59deefe1f3907656c3748a5cc64d8524cf09440df0da7",
  "edges/shift/zarr.json": "b022e90b644066d6b57557117bc3b9f91d66c3880932b5cbe6c89a8e9e200406",
  "edges/src/c/0": "04a766d67c4b8a55cf3702a2fb8201bbed015ff5435eea8a48d627341b87cfde",
  "edges/src/zarr.json": "1ffc9c37d7de6a032e1ba741ec11904ced032cc04002ff322b0f167af06a8486",
  "edges/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "structures/atom_ptr/c/0": "a726a67b0a6ed72ec104da73b1e42cadc7e58e1c42f9d90ca274d730f6d3122e",
  "structures/atom_ptr/zarr.json": "e3f473f26fb528de8fedc519a9205f850b6a5554ff9d46ec7a31e983d0a1fcdb",
  "structures/cell/c/0/0/0": "f09c17f731b092172c72fbff7dd0fb3321566909bdab55599ba4990c9eb338ce",
  "structures/cell/zarr.json": "d0cfd2109158bf7a287186ee750e4e5b88a4f29d84ffa7ea0b17adea512edb0a",
  "structures/edge_ptr/c/0": "0421491f6d7be41aa012da04706568d5f949352ab97aa1505bea15fe9a6a18e7",
  "structures/edge_ptr/zarr.json": "e3f473f26fb528de8fedc519a9205f850b6a5554ff9d46ec7a31e983d0a1fcdb",
  "structures/energy/c/0": "69fe7f297aa8aa2f606b83c6e4550a595237ce4706950754ed7db2001ebb8106",
  "structures/energy/zarr.json": "c9928e1deb1d83695b692ea202366aa0aa67702ce428669a559f6ed10f7863ea",
  "structures/fermi_level/c/0": "95ce5db64c125bddf0eb120dea61f0572c162b9984f6b45a13599197f6329406",
  "structures/fermi_level/zarr.json": "c9928e1deb1d83695b692ea202366aa0aa67702ce428669a559f6ed10f7863ea",
  "structures/id/c/0": "e710c8b0249b2a3ebc004fc75fd0f5178ab344ec6481df7649e33c085bed0217",
  "structures/id/zarr.json": "ecc7348d2507805f5e11a7b3fccdd224b16d212fad2c75a16d9680373eeb40e1",
  "structures/natoms/c/0": "84417d81ba8bd231b02f42887bcf636066ada37488928372d34af01d6e62c986",
  "structures/natoms/zarr.json": "bc10561736ebc31cb59a65ea4f13df5880a997b68ab408308a4eb89b48768fff",
  "structures/nedges/c/0": "ce366ea53fab571bd27bc3fc8a8def8f095dbcb2612f674ba757968c359e61bc",
  "structures/nedges/zarr.json": "f2c3b6b929b26e0ab4be8255eebeef3a7dcdfc8517a8f17ba548b8eebcf84f8f",
  "structures/nelectron/c/0": "69fe7f297aa8aa2f606b83c6e4550a595237ce4706950754ed7db2001ebb8106",
  "structures/nelectron/zarr.json": "c9928e1deb1d83695b692ea202366aa0aa67702ce428669a559f6ed10f7863ea",
  "structures/parent/c/0": "4427cce3001c7baec6d1bf5a6bf02416f9f2e46d071c3bb3dc2398dbf0c6abb5",
  "structures/parent/zarr.json": "f2c3b6b929b26e0ab4be8255eebeef3a7dcdfc8517a8f17ba548b8eebcf84f8f",
  "structures/pbc/c/0/0": "94a76d415b8a1be2e1a04f1d409aa46a72b0f26de2cd1a84db0f2d5a0750d537",
  "structures/pbc/zarr.json": "f5b1c2d72d241e3c8a7ef4fe7a10baf1142f3439fb7aa8716e98447ff6872454",
  "structures/rotation/c/0/0/0": "b4e7b0f516d5d4e91a2fa214a51cc06d7f75700d615af59951de9b2c0a658167",
  "structures/rotation/zarr.json": "d0cfd2109158bf7a287186ee750e4e5b88a4f29d84ffa7ea0b17adea512edb0a",
  "structures/sources/c/0": "fd794fa7a2e1351652e1f2c61063179d38ca2c0c835c3a12b45cd70f31a4bae5",
  "structures/sources/zarr.json": "ecc7348d2507805f5e11a7b3fccdd224b16d212fad2c75a16d9680373eeb40e1",
  "structures/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "zarr.json": "41413cad492f94b02cee48a41aa68375108f4b0644b905042fb781e91441b4e6"
 },
 "deeph_legacy_aug": {
  "atoms/Z/c/0": "8843ee66589cb8022ac81a6a876bc0f2fef2112e3527e5ce276163760188abe6",
  "atoms/Z/zarr.json": "9233ae0d7d881220c230224586c14eb82018f32bf09622e2984f15846d39af75",
  "atoms/pos/c/0/0": "7502b7d950eb4f7180272ad846b799a52924c763c4e5f8cf5fbfd06a9dc67ce4",
  "atoms/pos/zarr.json": "e0224fd394194decb23363e23aef0f8ee218ac12e83b8b87e64bdd5fdc58f014",
  "atoms/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "blocks/H/c/0": "d4e69b56935d06c3f15b780b8b00a4cacc0aa84d3c70ef9732abe4721d8c5503",
  "blocks/H/zarr.json": "403f02b2b6f3864762eab00f90202a49ce0cb37cd44cd9d37634f187c32cf944",
  "blocks/S/c/0": "def683c5b10d069f5a137ca06e3e1d3a6c532f4deb265c9236f813d16f05f006",
  "blocks/S/zarr.json": "403f02b2b6f3864762eab00f90202a49ce0cb37cd44cd9d37634f187c32cf944",
  "blocks/T/c/0": "d922eb1204341c2f5c84be61f87adac1539387c637d40b923ae2abc57db18870",
  "blocks/T/zarr.json": "939e98402bd291b0555a5da85373120cdc91c6083c8b58fa85eb79e64be53b45",
  "blocks/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "edges/H_ptr/c/0": "f3b871d38641236cde4fb062de4c8e07f6406d9dead1a629105d62722c79d7f9",
  "edges/H_ptr/zarr.json": "b060c3aadb26ee5ffaf4a8bc0e33594d1dbfa174ec6392b9c6482d277db50a48",
  "edges/S_ptr/c/0": "f3b871d38641236cde4fb062de4c8e07f6406d9dead1a629105d62722c79d7f9",
  "edges/S_ptr/zarr.json": "b060c3aadb26ee5ffaf4a8bc0e33594d1dbfa174ec6392b9c6482d277db50a48",
  "edges/T_ptr/c/0": "5c2b5bced3f47366cddc3079cd0c425bba44a7d1d521aa4a545ffaff55cc2a7d",
  "edges/T_ptr/zarr.json": "b060c3aadb26ee5ffaf4a8bc0e33594d1dbfa174ec6392b9c6482d277db50a48",
  "edges/dst/c/0": "9b9ca11a391fc206ff3979d86cb874dc5cddaca801bf4bcd2a79b98f6afd2f13",
  "edges/dst/zarr.json": "4d72aed8fe9adc96fb33263f79486234de6d8ef26ef8a418cc517837b47918de",
  "edges/shift/c/0/0": "d1352436344d943cf333f7d91f6557221b78ef3d1335b1dd14c763b21aef72bf",
  "edges/shift/zarr.json": "fb31867aabe03356ef701d775b9e4be7f4c4b824e55ff9566e053f7ccdf2255b",
  "edges/src/c/0": "daa5213e00ce7378827729b252b66719c00702424e660b20f409997f565e5695",
  "edges/src/zarr.json": "4d72aed8fe9adc96fb33263f79486234de6d8ef26ef8a418cc517837b47918de",
  "edges/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "structures/atom_ptr/c/0": "7172922d993cc76285d25197bfa5118ea2975558f380b35ee431d61212e835bb",
  "structures/atom_ptr/zarr.json": "24954c0261db2bc4f775995db36f8512660da42d118b656d3eddd8ec01abdf5e",
  "structures/cell/c/0/0/0": "ce1341c9ab30878de558b2a360fd04e63b70b0c07e6f3f271f43986c9cac83b4",
  "structures/cell/zarr.json": "81b35c1a4a0f2fe61d738e9a6786ec7153f98304558b027378f94888efa25fd2",
  "structures/edge_ptr/c/0": "dd94bf279f100139b003796fa35bd27b4d40927a3649d70fd749d36cf84f1768",
  "structures/edge_ptr/zarr.json": "24954c0261db2bc4f775995db36f8512660da42d118b656d3eddd8ec01abdf5e",
  "structures/energy/c/0": "34736218ecef945f2711a58acf9a7ab95e4acdda87c64c026ea068fd726e8895",
  "structures/energy/zarr.json": "9cfe2ed486158f826cf01d8671f1d225478ae53024864fbf105991373dfe75bd",
  "structures/fermi_level/c/0": "6160bfc6214f1ffc6c8e3e16610e5cbb1cb1fdb5194cadc31fcc890a5ab07bc5",
  "structures/fermi_level/zarr.json": "9cfe2ed486158f826cf01d8671f1d225478ae53024864fbf105991373dfe75bd",
  "structures/id/c/0": "ad9b2b3fff3bf368976ad162a3811aa5c92886814a51934f2873e9f2dc4b73eb",
  "structures/id/zarr.json": "e5e156be455525b8494f15247f385a6a7b369eaf67485635141a2813766f9cec",
  "structures/natoms/c/0": "15f6f02fead15ce4845be4a683f3381809336fa6dc3cf0318bd05b6b054b8a8d",
  "structures/natoms/zarr.json": "9d9ba810318292140b902f56ebe75bab38f26314899303f0b6b87a26d8a672d9",
  "structures/nedges/c/0": "670b48c78cd599c4882488767bf21726d03f85d06b46cf193f4224c5c62c1c97",
  "structures/nedges/zarr.json": "e3f473f26fb528de8fedc519a9205f850b6a5554ff9d46ec7a31e983d0a1fcdb",
  "structures/nelectron/c/0": "34736218ecef945f2711a58acf9a7ab95e4acdda87c64c026ea068fd726e8895",
  "structures/nelectron/zarr.json": "9cfe2ed486158f826cf01d8671f1d225478ae53024864fbf105991373dfe75bd",
  "structures/parent/c/0": "a1477cc98501ee4bbe57da44da70f5c3d8737a9ba2ecf7073a4f0a078c2fccd0",
  "structures/parent/zarr.json": "e3f473f26fb528de8fedc519a9205f850b6a5554ff9d46ec7a31e983d0a1fcdb",
  "structures/pbc/c/0/0": "6447575f9b6ef839c4fb03ea4ce9e9ce9c2ccfa554e68b34fbfdf4679c4e73af",
  "structures/pbc/zarr.json": "7a728b76008f70c849850b49feab9846f97831a75c9cdbae80249abc90563ec3",
  "structures/rotation/c/0/0/0": "4670a41c1f45d34a8d67f66bb71721fea1dd049bfb44f35c7c186b7134f7b808",
  "structures/rotation/zarr.json": "81b35c1a4a0f2fe61d738e9a6786ec7153f98304558b027378f94888efa25fd2",
  "structures/sources/c/0": "ecd4d16a43906d7af044511d2870d98df120937a5dd4023ddfb1fbc49f9f06da",
  "structures/sources/zarr.json": "e5e156be455525b8494f15247f385a6a7b369eaf67485635141a2813766f9cec",
  "structures/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "zarr.json": "c088e8bceea8d0dd9139ad5bdfe8090f148a1e8a94a2ec3c6abbdf4a38d4548c"
 },
 "openmx_graphene": {
  "atoms/Z/c/0": "9f4b31306df97a6fa24550ef1f2dcf4329a928fe9e941ca6084c5e8bedafb666",
  "atoms/Z/zarr.json": "d085a356ea6214844535a9e1646351a5bb444820f2d04d9a6e00c3127860842a",
  "atoms/pos/c/0/0": "2294158125cf736211bc136ca80ed3198616b0111585d502eb1b3e20c2cb3370",
  "atoms/pos/zarr.json": "60261d777dbafc8e2c2a46d6985b3d11203338c17e9f26e4c85c4760b8439daa",
  "atoms/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "blocks/H/c/0": "91873cbb450aba240b4296f822a81b50c7080de88a37689653b99995de7005b2",
  "blocks/H/zarr.json": "d1636cd37121d189d8ad41980f48894f3dc7c723b61bd6037cf52bc4beb2778a",
  "blocks/S/c/0": "d8c3896465d67958a484c7ee97e5e327e648e10f92a617f89733752e330be2c1",
  "blocks/S/zarr.json": "d1636cd37121d189d8ad41980f48894f3dc7c723b61bd6037cf52bc4beb2778a",
  "blocks/T/c/0": "cce24f455eb7a921fe3b2513dfb046871f958320984be9d477d916377c55bbfc",
  "blocks/T/zarr.json": "97e9f13588466d7ea27a74663509769115d87bcdd20c85a24dade0ff173d932d",
  "blocks/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "edges/H_ptr/c/0": "9e004e16f1342fb3222989463fe53c55e52b8bac16bdf8b76031bcf0d59cbae3",
  "edges/H_ptr/zarr.json": "6ea65950c9ee7bb2b1e0cf9388dfdbeabff8c83d8b7e5bc0954c4dff7e95dc1e",
  "edges/S_ptr/c/0": "9e004e16f1342fb3222989463fe53c55e52b8bac16bdf8b76031bcf0d59cbae3",
  "edges/S_ptr/zarr.json": "6ea65950c9ee7bb2b1e0cf9388dfdbeabff8c83d8b7e5bc0954c4dff7e95dc1e",
  "edges/T_ptr/c/0": "dea3ee44bed2e852a161220bd79e8962a9a410ee12b7c689d34b19399752d1c6",
  "edges/T_ptr/zarr.json": "6ea65950c9ee7bb2b1e0cf9388dfdbeabff8c83d8b7e5bc0954c4dff7e95dc1e",
  "edges/dst/c/0": "7ab5a9ae8426b5e64de9143cd209f7d2b8074c681052277b0449839c1c53214e",
  "edges/dst/zarr.json": "dc1dc5b7773ca1e0421fa92668e39909a9e1373b84409a8d5e5a7247dddc834e",
  "edges/shift/c/0/0": "4e674559e8990e24185dce30a55c45aa237266f9ae4835648677f7a7c0ac75e4",
  "edges/shift/zarr.json": "ef1356a0d0c087f1f1a32960f9190c5c86f454adf43b2c80d7c3e55e3e65d8a9",
  "edges/src/c/0": "69aa5ab03a9b26ab935ca49eb52f4fa892db97d7b61fabdc86f19c42ebf1f757",
  "edges/src/zarr.json": "dc1dc5b7773ca1e0421fa92668e39909a9e1373b84409a8d5e5a7247dddc834e",
  "edges/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "structures/atom_ptr/c/0": "c3da6302e7c53fd14775028bfc6644336813edda3c2766b218eccc91d6a0a5f9",
  "structures/atom_ptr/zarr.json": "e3f473f26fb528de8fedc519a9205f850b6a5554ff9d46ec7a31e983d0a1fcdb",
  "structures/cell/c/0/0/0": "04d438f65fb26a5c522744e40f15d1713b4328856d0d7b86b471a4f7cddec903",
  "structures/cell/zarr.json": "d0cfd2109158bf7a287186ee750e4e5b88a4f29d84ffa7ea0b17adea512edb0a",
  "structures/edge_ptr/c/0": "624cd3f467412623bf0545391892adf61defe3ca357ae90e3ee175a85fb66a27",
  "structures/edge_ptr/zarr.json": "e3f473f26fb528de8fedc519a9205f850b6a5554ff9d46ec7a31e983d0a1fcdb",
  "structures/energy/c/0": "9b873453ade75684180ca710f8e23c0216ddabeaf6f91e558246bf6e2bdee9ff",
  "structures/energy/zarr.json": "c9928e1deb1d83695b692ea202366aa0aa67702ce428669a559f6ed10f7863ea",
  "structures/fermi_level/c/0": "47134206a830672c2e6ffcff781d26308d529ebb01873c36cd3c396064defe02",
  "structures/fermi_level/zarr.json": "c9928e1deb1d83695b692ea202366aa0aa67702ce428669a559f6ed10f7863ea",
  "structures/id/c/0": "50275c52ee4d618cd5a106e6aea6e3ecdd696107219b87cb42633c9c3a40d468",
  "structures/id/zarr.json": "ecc7348d2507805f5e11a7b3fccdd224b16d212fad2c75a16d9680373eeb40e1",
  "structures/natoms/c/0": "fdae11e0ff7170c0a4ee8ed31cd1cdf1f9b8738f2b77b5ed892a3e95e0c08bf3",
  "structures/natoms/zarr.json": "bc10561736ebc31cb59a65ea4f13df5880a997b68ab408308a4eb89b48768fff",
  "structures/nedges/c/0": "2c4807de4ed69b7dcd1924fc979e83fbfdad726bbd31d17d90ac188f12f65419",
  "structures/nedges/zarr.json": "f2c3b6b929b26e0ab4be8255eebeef3a7dcdfc8517a8f17ba548b8eebcf84f8f",
  "structures/nelectron/c/0": "22bcfefc30580e07ad7b40c9e21500d1ad7b700ea2fe7d1e77c9ffb9845599a7",
  "structures/nelectron/zarr.json": "c9928e1deb1d83695b692ea202366aa0aa67702ce428669a559f6ed10f7863ea",
  "structures/parent/c/0": "4427cce3001c7baec6d1bf5a6bf02416f9f2e46d071c3bb3dc2398dbf0c6abb5",
  "structures/parent/zarr.json": "f2c3b6b929b26e0ab4be8255eebeef3a7dcdfc8517a8f17ba548b8eebcf84f8f",
  "structures/pbc/c/0/0": "94a76d415b8a1be2e1a04f1d409aa46a72b0f26de2cd1a84db0f2d5a0750d537",
  "structures/pbc/zarr.json": "f5b1c2d72d241e3c8a7ef4fe7a10baf1142f3439fb7aa8716e98447ff6872454",
  "structures/rotation/c/0/0/0": "b4e7b0f516d5d4e91a2fa214a51cc06d7f75700d615af59951de9b2c0a658167",
  "structures/rotation/zarr.json": "d0cfd2109158bf7a287186ee750e4e5b88a4f29d84ffa7ea0b17adea512edb0a",
  "structures/sources/c/0": "4cc0bd63c50d23a81bc478f7dc8ea3774e2e51ebde0fecce257ee969a39f4703",
  "structures/sources/zarr.json": "ecc7348d2507805f5e11a7b3fccdd224b16d212fad2c75a16d9680373eeb40e1",
  "structures/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "zarr.json": "f0b7b922490af59556421e5a90f0859790bdb67fb90b3e2032d55fc4851276ec"
 },
 "synthetic_aug": {
  "atoms/Z/c/0": "eb8d9bda3f5db85b70cb1ced59e1647df033b0b4a840d9e4f0c5c899d6186ea6",
  "atoms/Z/zarr.json": "4811e5efec1f88cce99e229e2fd733669996cca87c80d15fe6cfd37a8f69bcd6",
  "atoms/pos/c/0/0": "e1bda780a143ff9b5b62e42116acb95ff0ce4853f53723a24a3821ccb23974f2",
  "atoms/pos/zarr.json": "07e02a04279d01b6db7fb11b3f878f8f8159e8400ef39e8650d66f9b8b03977e",
  "atoms/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "blocks/H/c/0": "fecf70143d7fba82d0dfe92836ffce193640476291ccec886f81922c449adfa1",
  "blocks/H/zarr.json": "d787cd303d17b99efa54af583ec53a7b5d29c7f40cb2e8560401ab2e6c0b042d",
  "blocks/S/c/0": "016bd703c9e55f3b296b805e150ba6e004b9ae83733df18f2e82525e64ef917d",
  "blocks/S/zarr.json": "d787cd303d17b99efa54af583ec53a7b5d29c7f40cb2e8560401ab2e6c0b042d",
  "blocks/T/c/0": "4774c7ecdf111555b1cc8e289c996e01ede2ab0e65326c301e7e75643452a925",
  "blocks/T/zarr.json": "ce63d229571f8b660d991ed30ed8abf34bc2679e9fbb7a3f8bdbe69a8e81638e",
  "blocks/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "edges/H_ptr/c/0": "ba1d778bb5c4f3ce8f8a656d0a8f8c73dc84ad2d1e75be843d1cc2b84a6df48d",
  "edges/H_ptr/zarr.json": "ee04a6f8cdbcba0ccd9c82ae015cc2a532da0140d763bcf189695717e086357c",
  "edges/S_ptr/c/0": "ba1d778bb5c4f3ce8f8a656d0a8f8c73dc84ad2d1e75be843d1cc2b84a6df48d",
  "edges/S_ptr/zarr.json": "ee04a6f8cdbcba0ccd9c82ae015cc2a532da0140d763bcf189695717e086357c",
  "edges/T_ptr/c/0": "6556a6aa7e38746ba6e797d19d350a01277732846b09651d931be653bb927c65",
  "edges/T_ptr/zarr.json": "ee04a6f8cdbcba0ccd9c82ae015cc2a532da0140d763bcf189695717e086357c",
  "edges/dst/c/0": "d943cc8186a44f0f9496a3e4a4459658aabd7d810ced6f3c105c50294a63809e",
  "edges/dst/zarr.json": "3b230e759bca9e1d04560e3948b114dea16b1d9a0fc86d5085eee80e3fdfeab4",
  "edges/shift/c/0/0": "e3faad6bcec141470ec29a34e9847c964fb4d3d01521f8148cac54e86276512b",
  "edges/shift/zarr.json": "4a94516cc9cdedf5526cb5f675a76df42ba0b3c07dac9c5fa18202a2ad68ac55",
  "edges/src/c/0": "1e9f2939f02ebfe64611bf1d8edb6f6ce5748c66b6e5dec53ae1f57bbe221378",
  "edges/src/zarr.json": "3b230e759bca9e1d04560e3948b114dea16b1d9a0fc86d5085eee80e3fdfeab4",
  "edges/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "splits/random/c/0": "a3b5a1cf233c08c2568b3273e394089c51dda957cdfa5663e01274122e46795a",
  "splits/random/zarr.json": "d8b6623432065387837f8fde6e88667887d172e09e422415f15eeca4defce740",
  "splits/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "structures/atom_ptr/c/0": "3ef4eb7c905139a16bdb7dc64b5c6052e7c08303e42991c434d6709be1d53e68",
  "structures/atom_ptr/zarr.json": "61ab1cf0af1b73d364ea6f3335503d5adc6c5f992cd80d6daf2b21f2d0eb6385",
  "structures/cell/c/0/0/0": "02485b2fd0e69dd5cd73b83537387fefe200654286c49d2ddc2ac4482a35857a",
  "structures/cell/zarr.json": "f150514aff8608957c8d27a6f9e2f38cbf4dea282d069dc0d8f31215e7501363",
  "structures/edge_ptr/c/0": "8b300e949e869a2754c510723c1b64b01cff119c0bf16a2941e74858064da287",
  "structures/edge_ptr/zarr.json": "61ab1cf0af1b73d364ea6f3335503d5adc6c5f992cd80d6daf2b21f2d0eb6385",
  "structures/energy/c/0": "852185c9c592aec3fa80194546314929196c387d2fa67be38cbd3fe936fedfc2",
  "structures/energy/zarr.json": "4361d247713b31215d483ebcce1e2e899eede702e0ad1e3f15d313b9e202a406",
  "structures/fermi_level/c/0": "e29abf4a51dd54352002cb78beadf2034840c505a53eb7d88a949cbad74ece12",
  "structures/fermi_level/zarr.json": "4361d247713b31215d483ebcce1e2e899eede702e0ad1e3f15d313b9e202a406",
  "structures/id/c/0": "d0b129aaaffa0ec6d317d205a33e4faaf76f4721f95611dfd59e3ee27db52c04",
  "structures/id/zarr.json": "627a1c75ab50d5da1e74ad692723f4a0ce858830ac5ee611187dc994464c12bb",
  "structures/natoms/c/0": "2c2093a0736cc43046c5a97f06ad71b079f9f8f516a6cf0cd3b3f5f2752903a3",
  "structures/natoms/zarr.json": "5e7d39f1a5cd2022ab970acede16174aaad82051768ef90ca23c49d06f3f0399",
  "structures/nedges/c/0": "637e0be722bcd73944235e909e70a897140fb816f1328aafa30041b142f38fa2",
  "structures/nedges/zarr.json": "658b45fe7a65f970c32fcd664d0a9c44b75b01e9e1401ee99a994655a6e255ea",
  "structures/nelectron/c/0": "f4ad28ffe9b1e81e80290e933b2a25e9cdf432d088e490b67f9f7b37b3afba59",
  "structures/nelectron/zarr.json": "4361d247713b31215d483ebcce1e2e899eede702e0ad1e3f15d313b9e202a406",
  "structures/parent/c/0": "08372d93120157fbae1ac8d47204341b04d61ef3218691638229ac08344ae93b",
  "structures/parent/zarr.json": "658b45fe7a65f970c32fcd664d0a9c44b75b01e9e1401ee99a994655a6e255ea",
  "structures/pbc/c/0/0": "c177d00dad87ba888c8daf1a2f0d9bc5d4b0e44bcc18b194cf3f44f95f39ba11",
  "structures/pbc/zarr.json": "e206e0699c167ff15acc14717146d06d8b13ab843a191f0e9d826eb747619fb0",
  "structures/rotation/c/0/0/0": "0fe77466e9059e7b3d7fbacfba99c30cffce8ab933b63990a6d83d11cc36a7e8",
  "structures/rotation/zarr.json": "f150514aff8608957c8d27a6f9e2f38cbf4dea282d069dc0d8f31215e7501363",
  "structures/sources/c/0": "3ff1848464381fbb170328a9eb4323b6124ff5d32e0c0103ed2b3435410bac6f",
  "structures/sources/zarr.json": "627a1c75ab50d5da1e74ad692723f4a0ce858830ac5ee611187dc994464c12bb",
  "structures/zarr.json": "f420209cf981cc19f29bd9e7eeb6a281306a0879c3b649e2214029e208bfcedb",
  "zarr.json": "ea93319214053baf29be5e4926ba3198c077961afd6888953158e43d316fcfec"
 }
}
# any number of workers writes the same bytes: the 2-worker store must equal the 1-worker one
GOLDEN["synthetic_aug_w2"] = GOLDEN["synthetic_aug"]

if __name__ == "__main__":
    res = {}
    for case in CASES:
        with tempfile.TemporaryDirectory(dir="/tmp") as d:
            res[case[0]] = store_digest(make(case, Path(d)))
    json.dump(res, sys.stdout, indent=1, sort_keys=True)
    sys.exit(0)

import pytest  # noqa: E402


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_store_bytes_unchanged(case, tmp_path):
    from hambench.testing import require_realdata

    if case[2] is not None:
        require_realdata(case[2])
    got = store_digest(make(case, tmp_path))
    want = GOLDEN[case[0]]
    assert sorted(got) == sorted(want), "the store's files differ"
    bad = [k for k in want if got[k] != want[k]]
    assert not bad, f"bytes differ in {bad}"
