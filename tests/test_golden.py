"""Golden vectors: the exact canonical bytes (hex) and SHA-256 of one fixed instance of every structure, and
the signing bytes of a Tx and a Vote. If one of these changes, every other implementation, every stored
block and every signature breaks: change them only with a protocol version change.

The instances are built by tests/gen_vectors.py (fixed seeds, fixed labels, fixed times); the constants below
were generated once with `PYTHONPATH=. python tests/gen_vectors.py --python` and checked by hand-decoding
some of them with plain msgpack (see the tests at the end). docs/test-vectors.md must equal what
`gen_vectors.render()` writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

import msgpack
import nacl.exceptions
import nacl.signing
import pytest

from consensus.crypto import Domain, account_id, signing_bytes
from consensus.encoding import Struct
from consensus.merkle import merkle_root

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STRUCT_MODULES = (
    "consensus.types", "consensus.tendermint", "contracts.records", "contracts.txs", "contracts.genesis",
    "contracts.execute", "contracts.evidence",
)


def _load_gen_vectors() -> ModuleType:
    mod = sys.modules.get("gen_vectors")
    if mod is None:
        spec = importlib.util.spec_from_file_location("gen_vectors", HERE / "gen_vectors.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["gen_vectors"] = mod
        spec.loader.exec_module(mod)
    return mod


gv = _load_gen_vectors()
INSTANCES: dict[str, Struct] = gv.instances()
VECTORS: dict[str, bytes] = dict(gv.vectors())


def struct_classes() -> list[type[Struct]]:
    out = []
    for modname in STRUCT_MODULES:
        mod = importlib.import_module(modname)
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, Struct) and obj is not Struct and obj.__module__ == modname:
                out.append(obj)
    return out


# ------------------------------------------------------------------------------------------ the constants

GOLDEN: dict[str, tuple[str, str]] = {
    "Tx": (
        "97ab6d79646174612d74657374c4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9c4"
        "201398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93ca03ad636f6e73656e742e6772616e74"
        "c4c098c420dbc298251c51321b7266e78d1c151c2b62aff8cb95b293096d3463018544face91c4201c49a083a74ed444"
        "5c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbb92a8656d706c6f796572ac6d6f6e74686c795f62617365b4"
        "6d6f727467616765206170706c69636174696f6ecf0000018c6a64300003c420fd61e83a54c7fe86def39246ced9d83d"
        "17ff4856683446913f9c4efcf8fd5fadc4204f300c78a52c594e19b36fdc3ff835b5e980ebeae588fad02c8a5f9bad7f"
        "accac4400e8b539b4e61df2f5604018378405fccddc4d11ab5953a1270b5e8c1b10d7cc75e29a66b420363e3df310cb8"
        "f0c3b4d53d3febe6003f0f2b3473b7bce2571709",
        "4bd29377e4ac7638871dcca84479ca961423e3ba77fdb52175ba706fff8dab60",
    ),
    "Validator": (
        "93c4208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0aa27631",
        "a255e1dfd7b7e70eac23ae77a34676701231ca68ebd78fe27b49988579f038a3",
    ),
    "ValidatorSet": (
        "919493c4208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0aa2763193c4208139770e"
        "a87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39414a2763293c420ed4928c628d1c2c6eae9033890"
        "5995612959273a5c63f93636c14614ac8737d11ea2763393c420ca93ac1705187071d67b83c7ff0efe8108e8ec453057"
        "5d7726879333dbdabe7c28a27634",
        "62d26085f6ec5e5a38db461b1fd44abe094e1e49631bc1ea73906505e82e0b6c",
    ),
    "Vote": (
        "97020100c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fdb5e9a13d81cf15fb83cc19e16ee6cf0000018bcfe56ddcc4"
        "2034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97ec4404db584626c36b8cb90e82f350e"
        "f298e4e0782299ca0687f91977bdb2c9b2ff522ac4c7589557ac1821946d538e82f17913a405d4b4b99250ee3111ff55"
        "378402",
        "8265e4138782d510be995da3eb489ffd9e2f324546ed842a02481693c31378d7",
    ),
    "CommitSig": (
        "93c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97ecf0000018bcfe56ddcc4404db5"
        "84626c36b8cb90e82f350ef298e4e0782299ca0687f91977bdb2c9b2ff522ac4c7589557ac1821946d538e82f17913a4"
        "05d4b4b99250ee3111ff55378402",
        "21512daa49c81fe54795b2a7115cf8e684dcbd19aed32fe66194349a588cdb8b",
    ),
    "CommitCertificate": (
        "940100c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fdb5e9a13d81cf15fb83cc19e16ee69393c42034750f98bd59fc"
        "fc946da45aaabe933be154a4b5094e1c4abf42866505f3c97ecf0000018bcfe56ddcc4404db584626c36b8cb90e82f35"
        "0ef298e4e0782299ca0687f91977bdb2c9b2ff522ac4c7589557ac1821946d538e82f17913a405d4b4b99250ee3111ff"
        "5537840293c4206a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827cf0000018bcfe56ddd"
        "c440bdd1aec8b745e9a7bedd1869840b605868dc8051ce0f79297fa36dbbb443c78c46edef5249c5942175a08e5849d9"
        "66fddea27679ff1adaba0279eacb845f880493c420b62e867fa2f33afe62d5d6b1642e1621d543307846b2a57b897e71"
        "0919b76709cf0000018bcfe56ddec44090ba6db10493cdb5d8f9401727a833a03ede984fc6b3e36db198112a1cef9adb"
        "2765a419e1cdc2edb0f5e6f9fb6031975a14003bca57e60c9489e3924c9cba00",
        "beac9b5806361cb54e66afb900fc03bbca4f9fae0c950bde65b24987e562d6fa",
    ),
    "Header": (
        "9cab6d79646174612d7465737402cf0000018bcfe56fd0c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fdb5e9a13d81"
        "cf15fb83cc19e16ee6c420b9d71f01188adac27038ad923e28c5f2739d8c8a064afe8ef8b9852b3e4553d401c420beac"
        "9b5806361cb54e66afb900fc03bbca4f9fae0c950bde65b24987e562d6fac4203b0980da879d78487772145bcb7678f4"
        "279758c331696f2fb0343cadc7c4a9ebc4205e0b25223244673ce833f905af835a85956fc68b72f9a1cbfc6fd189d871"
        "d96bc42062d26085f6ec5e5a38db461b1fd44abe094e1e49631bc1ea73906505e82e0b6cc42062d26085f6ec5e5a38db"
        "461b1fd44abe094e1e49631bc1ea73906505e82e0b6cc4206a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3"
        "ae76b27529f03827",
        "eb1c938e92ff858de1040f98c796c007a5cfe1dabed49f6e9d6780b582072f73",
    ),
    "Block": (
        "939cab6d79646174612d7465737402cf0000018bcfe56fd0c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fdb5e9a13d"
        "81cf15fb83cc19e16ee6c420b9d71f01188adac27038ad923e28c5f2739d8c8a064afe8ef8b9852b3e4553d401c420be"
        "ac9b5806361cb54e66afb900fc03bbca4f9fae0c950bde65b24987e562d6fac4203b0980da879d78487772145bcb7678"
        "f4279758c331696f2fb0343cadc7c4a9ebc4205e0b25223244673ce833f905af835a85956fc68b72f9a1cbfc6fd189d8"
        "71d96bc42062d26085f6ec5e5a38db461b1fd44abe094e1e49631bc1ea73906505e82e0b6cc42062d26085f6ec5e5a38"
        "db461b1fd44abe094e1e49631bc1ea73906505e82e0b6cc4206a3803d5f059902a1c6dafbc9ba4729212f7caac08634c"
        "c3ae76b27529f0382791c4c897ab6d79646174612d74657374c4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f"
        "9d46df327dec56b8a9b7c9c4201398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93ca04ae63"
        "6f6e73656e742e7265766f6b65c42391c42000d1c1c9f0bcc58c43e6d0b1c69ce3c8250dd42a15f9127dc42eb95303c4"
        "bec6c44059b84e5c7fbee88168a0cd2830e99588ba7efdcab2ad34aa7c45203740bb0c431d91d9199ae887c61984ffb1"
        "e58e3a1d1e698850eec02f538bb500f78a3cc20f940100c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fdb5e9a13d81"
        "cf15fb83cc19e16ee69393c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c97ecf0000"
        "018bcfe56ddcc4404db584626c36b8cb90e82f350ef298e4e0782299ca0687f91977bdb2c9b2ff522ac4c7589557ac18"
        "21946d538e82f17913a405d4b4b99250ee3111ff5537840293c4206a3803d5f059902a1c6dafbc9ba4729212f7caac08"
        "634cc3ae76b27529f03827cf0000018bcfe56dddc440bdd1aec8b745e9a7bedd1869840b605868dc8051ce0f79297fa3"
        "6dbbb443c78c46edef5249c5942175a08e5849d966fddea27679ff1adaba0279eacb845f880493c420b62e867fa2f33a"
        "fe62d5d6b1642e1621d543307846b2a57b897e710919b76709cf0000018bcfe56ddec44090ba6db10493cdb5d8f94017"
        "27a833a03ede984fc6b3e36db198112a1cef9adb2765a419e1cdc2edb0f5e6f9fb6031975a14003bca57e60c9489e392"
        "4c9cba00",
        "6b18c00e758dff1bb7eb1139d0ea0a66a91a100d856ffdf4523751105730a5ec",
    ),
    "ConsensusParams": (
        "98ce01000000cd1388ce00010000cd03e8cd01f4ccfacd07d002",
        "8b1fb3619d78353da259b507f98873579621eef31752b92890552604dbdff379",
    ),
    "Genesis": (
        "95ab6d79646174612d74657374cf0000018bcfe56800919493c4208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d"
        "94121bf3748801b40f6f5c0aa2763193c4208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9"
        "b39414a2763293c420ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d11ea2763393c420"
        "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c28a2763498ce01000000cd1388ce0001"
        "0000cd03e8cd01f4ccfacd07d002c501ba939494a662757265617591a561646d696ec4206e7a1cdd29b0b78fd13af4c5"
        "598feff4ef2a97166e3ca6f2e4fbfccd80505bf1c420c1c6f3d6c360c02306a85df378ad46e2365b928301d0bf18a2c4"
        "80f8928c033494af7075626c69632d736563757269747991a9726567697374726172c4208a875fff1eb38451577acd5a"
        "fee405456568dd7c89e090863a0557bc7af49f17c420a81112c7b17f9334a0f7fff5dbc8238a8ac128829610b933c730"
        "a47c8e07626694af736f6369616c2d736563757269747991a6697373756572c420ea4a6c63e29c520abef5507b132ec5"
        "f9954776aebebe7b92421eea691446d22cc42068430c801ec2edca5d537f4d24284e7dcfeee1c0000d06b523b5824803"
        "518b0094a462616e6b91a8636f6e73756d6572c420fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702ea"
        "c835e9f618c420e01e2df4f6c166cbbc2ba185bee6ab3b51d206f34fb81c5c5d1ff4668581205d019193b0736f636961"
        "6c2e696e737572616e636593a8656d706c6f796572ac6d6f6e74686c795f62617365a573696e636591c420fe812c12f3"
        "ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889",
        "a843e071394245a1ab80c55c550af2190844737997c51ff2c02d72cd18c27972",
    ),
    "Account": (
        "9bc4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9aa656e7465727072697365b857"
        "6569686169204578616d706c6520436f2e2c204c74642e90c4201398f62c6d1a457c51ba6a4b5f3dbd2f69fca9321621"
        "8dc8997e416bd17d93cac42030d3c865a48fceb3d6118577cf2e5f228d6ff69866264757785b253cb7a4806aa6616374"
        "69766505c420ca3fb35941a598b02893ce296a9cc8efe3d51b4f0d0bb27018c729ba8bc79a7792c42043a72e71440176"
        "2df66b68c26dfbdf2682aaec9f2474eca4613e424a0fbafd3cc42066be7e332c7a453332bd9d0a7f7db055f5c5ef1a06"
        "ada66d98b39fb6810c473a01",
        "b9b8e09ddeb6a18c55c894332c85b98d1b043ed9331b462d9347993d858c2a74",
    ),
    "Schema": (
        "94b0736f6369616c2e696e737572616e636593a8656d706c6f796572ac6d6f6e74686c795f62617365a573696e636591"
        "c420fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff55226388902",
        "6551115e3a4fab23bdffa4e29ae6f1408f6b53f5f9853bf4065af8b9f63096e4",
    ),
    "ValidatorUpdate": (
        "93c4200b513ad9b4924015ca0902ed079044d3ac5dbec2306f06948c10da8eb6e39f2d00a27635",
        "9c6fa2c2dd286bb38d9c6ef1a666d2f213d41958b671155cb7583b453b524866",
    ),
    "PendingValidators": (
        "919293c4200b513ad9b4924015ca0902ed079044d3ac5dbec2306f06948c10da8eb6e39f2d05a2763593c420ca93ac17"
        "05187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c00a27634",
        "0bf54367b458fec83b78551151209fe37e27b658e0ac89731e99b1cc723bf1db",
    ),
    "AdminProposal": (
        "98c42022e971ef187286f3238ccf7f6552a1605434b5fc3684ef3b642cf011166b253fc4207599776c3085e3f9da0d13"
        "071eb0b4ab50fd2bf64c06dd92c2365af3a328eca3ad76616c696461746f722e736574c42793c4200b513ad9b4924015"
        "ca0902ed079044d3ac5dbec2306f06948c10da8eb6e39f2d05a2763591c4207599776c3085e3f9da0d13071eb0b4ab50"
        "fd2bf64c06dd92c2365af3a328eca3a46f70656e0700",
        "6ddae456a75a01d8ace40161338f6dc8b31622860103cd6caf2af039e46dde3e",
    ),
    "Asset": (
        "9ec420846f3dbe8b5c3b7e99b46fe666a745fa2fa9f6bb7fa95da033db3ad618b2a312c4205c29b78f10a35a49a6231d"
        "08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9c420fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252"
        "ef7ff552263889b0736f6369616c2e696e737572616e63650293a8656d706c6f796572ac6d6f6e74686c795f62617365"
        "a573696e6365c420676f0e02b61f03f9c248514f05b4b960d816f0895a017678231f4d23361a83c8c420239f59ed55e7"
        "37c77147cf55ad0c1b030b6d7ee748a7426952f9b852d5a935e5c4201c49a083a74ed4445c804cc9cb9ab63d9be7d945"
        "1073ab200bc41a2c7131afbbc400a6616374697665a009cf0000018bcfe58b28",
        "abc9cc0ab49cd05b5d3b36ed73db6584eb530c653504c2b5d5ae1ac9b67766d5",
    ),
    "AssetRequest": (
        "9dc420e2c9dea4664cefaed5a96568ed3ec292ab46e6f7aee6a8fda5578c9b85c665cdaa636f7272656374696f6ec420"
        "5c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9c420fe812c12f3ab4ce6ac5db69ac352"
        "f906cb1b11ef43fb33e252ef7ff552263889b0736f6369616c2e696e737572616e6365c4201c49a083a74ed4445c804c"
        "c9cb9ab63d9be7d9451073ab200bc41a2c7131afbb91ac6d6f6e74686c795f62617365c420edb465624291e4053c6c5e"
        "a4b7eb320dec773e10a57d26b95dcf0564f8e310f8a966756c66696c6c6564c420846f3dbe8b5c3b7e99b46fe666a745"
        "fa2fa9f6bb7fa95da033db3ad618b2a312a00809",
        "f053b7edfd2d9c658512eb8b646a660254f922e466b5318bd838f1ff172fa0dd",
    ),
    "ConsentRequest": (
        "9dc4204f300c78a52c594e19b36fdc3ff835b5e980ebeae588fad02c8a5f9bad7faccac420dbc298251c51321b7266e7"
        "8d1c151c2b62aff8cb95b293096d3463018544facec4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df32"
        "7dec56b8a9b7c991b0736f6369616c2e696e737572616e636592a8656d706c6f796572ac6d6f6e74686c795f62617365"
        "b46d6f727467616765206170706c69636174696f6ece9a7ec80003a76772616e746564c42000d1c1c9f0bcc58c43e6d0"
        "b1c69ce3c8250dd42a15f9127dc42eb95303c4bec6a00acf0000018bcfe58f10",
        "cdb95e9e1f80bb5dd6f2831025908502d054b0abdd85f151ee70ee58432dde07",
    ),
    "Grant": (
        "9fc42000d1c1c9f0bcc58c43e6d0b1c69ce3c8250dd42a15f9127dc42eb95303c4bec6c4205c29b78f10a35a49a6231d"
        "08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9c420dbc298251c51321b7266e78d1c151c2b62aff8cb95b293096d"
        "3463018544face91c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbb92a8656d706c"
        "6f796572ac6d6f6e74686c795f62617365b46d6f727467616765206170706c69636174696f6ecf0000018c6a64300003"
        "01c420fd61e83a54c7fe86def39246ced9d83d17ff4856683446913f9c4efcf8fd5fadc4204f300c78a52c594e19b36f"
        "dc3ff835b5e980ebeae588fad02c8a5f9bad7faccaa76772616e7465640bcf0000018bcfe592f800",
        "6903a8511a75f35740ef014838c6e72eea083f2ea3aeeea89abc9fe8e0dd51af",
    ),
    "Access": (
        "99c420f4c2844f463b5a93a517de81b67a09c8b9d79697bd3e7e5145e20e1ca2013c06c42000d1c1c9f0bcc58c43e6d0"
        "b1c69ce3c8250dd42a15f9127dc42eb95303c4bec6c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200b"
        "c41a2c7131afbbc4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9c420dbc298251c"
        "51321b7266e78d1c151c2b62aff8cb95b293096d3463018544faceb46d6f727467616765206170706c69636174696f6e"
        "010ccf0000018bcfe596e0",
        "2737bd1d799ef0964309ab2f47e0ad86f55da1c5d21e26e3deb486c04fecaa30",
    ),
    "Propose": (
        "92ad76616c696461746f722e736574c42793c4200b513ad9b4924015ca0902ed079044d3ac5dbec2306f06948c10da8e"
        "b6e39f2d05a27635",
        "bdb8227e91898bd29e2987ef1629102ec6137063da14b7f4dadcd6067c366f64",
    ),
    "Approve": (
        "91c42022e971ef187286f3238ccf7f6552a1605434b5fc3684ef3b642cf011166b253f",
        "bd24fbefb9addf15d6f6e6c07aaa5e77c4b46378e7e59318c5fdd75dd634e699",
    ),
    "RegisterMember": (
        "94a66e6f7461727991a8636f6e73756d6572c42091a28a0b74381593a4d9469579208926afc8ad82c8839b7644359b9e"
        "ba9a4b3ac4204df79e6ebc734cab599d0721edc58b3216bd7631915cc05e315bc25771041d13",
        "b5c10ac8e3a05be60f5ed8827f9581b631539bd00cc9e5704062016d48aca9bb",
    ),
    "UpdateMember": (
        "93c420dbc298251c51321b7266e78d1c151c2b62aff8cb95b293096d3463018544face92a761756469746f72a8636f6e"
        "73756d6572a973757370656e646564",
        "e5616619ff1ccb65a775d199b7e0f71511ce5585a0a3fd2de591fb75a377f643",
    ),
    "RegisterSchema": (
        "93ae636976696c2e6d6172726961676592ad726567697374657265645f6f6eaa73706f7573655f72656691c420fe812c"
        "12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889",
        "1a98f636a85039d40d57a510b9f5867088955060ec66ba66546393961b9edc58",
    ),
    "SetValidator": (
        "93c4200b513ad9b4924015ca0902ed079044d3ac5dbec2306f06948c10da8eb6e39f2d05a27635",
        "9d41964e8c7aedc52838542a26f5959fe18faa761dd6315f0805cc99f404c908",
    ),
    "SetThreshold": (
        "9102",
        "2dba24a10ecf4134982c2b953cb8080848243aa95b41746cadb5ea26eb77a247",
    ),
    "RegisterHolder": (
        "94a6706572736f6ec420ca3fb35941a598b02893ce296a9cc8efe3d51b4f0d0bb27018c729ba8bc79a77c4201398f62c"
        "6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93cac42030d3c865a48fceb3d6118577cf2e5f228d6f"
        "f69866264757785b253cb7a4806a",
        "50f487ae20c18b593ba804e81b8391c408de435fcd86e1b0f749786ecf8ce4ac",
    ),
    "Delegate": (
        "91c42043a72e714401762df66b68c26dfbdf2682aaec9f2474eca4613e424a0fbafd3c",
        "07c7a3f98d72e2849fa5ceb93fb09db0448b2bb4ee09a9eafaee892b60a46485",
    ),
    "RotateKeys": (
        "92c4200beef5a9e679e6a3e134fe27837bff32c7cb5f5d44ea09bcb0e542bad6a4c0ccc4201180c189c49ec165f13f0b"
        "1b2215de9f4633c76d76b842e91071ba2e539c0565",
        "ff021f37ad3bc9b81c34d414a5f12dd50b508b895a57238e36e6a096e961ecbc",
    ),
    "IssueAsset": (
        "97c4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c9b0736f6369616c2e696e737572"
        "616e636593a8656d706c6f796572ac6d6f6e74686c795f62617365a573696e6365c420676f0e02b61f03f9c248514f05"
        "b4b960d816f0895a017678231f4d23361a83c8c420239f59ed55e737c77147cf55ad0c1b030b6d7ee748a7426952f9b8"
        "52d5a935e5c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbbc420e2c9dea4664cef"
        "aed5a96568ed3ec292ab46e6f7aee6a8fda5578c9b85c665cd",
        "2a24e0d09d7146d96425142806a8bf3542bd0b82f58d382a88cc9e4db744fac8",
    ),
    "RequestAsset": (
        "93c420fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889b0736f6369616c2e696e737572"
        "616e6365c400",
        "2d1ddb92c98ed0da41d142f53dc0277fd779e0560678bb718bc0fc425a742c98",
    ),
    "RequestCorrection": (
        "93c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbb91ac6d6f6e74686c795f626173"
        "65c420edb465624291e4053c6c5ea4b7eb320dec773e10a57d26b95dcf0564f8e310f8",
        "8b2cfb9de1e30712bc397eddcff235e4c74d2b06df81f94378864a5f509eb7c5",
    ),
    "RefuseRequest": (
        "92c420e2c9dea4664cefaed5a96568ed3ec292ab46e6f7aee6a8fda5578c9b85c665cdb96e6f207265636f726420666f"
        "72207468697320706572696f64",
        "05810e5fe03b6d9f780889cba2751a789bf2866187cf937efc33b2a3a592287f",
    ),
    "RevokeAsset": (
        "92c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbbaf69737375656420696e206572"
        "726f72",
        "cb02bd468e9a9b52c7d0bdf7642520687a982fe705d95d3fda113f8a5c72517c",
    ),
    "EraseAsset": (
        "91c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbb",
        "7b9f91d2c2afefe028c1e58f21880a1ce3f26b5c3ed18d848548bf847bd8d9a7",
    ),
    "RequestConsent": (
        "96c4205c29b78f10a35a49a6231d08ee840a04bcc3a37a4f9d46df327dec56b8a9b7c991b0736f6369616c2e696e7375"
        "72616e636592a8656d706c6f796572ac6d6f6e74686c795f62617365b46d6f727467616765206170706c69636174696f"
        "6ece9a7ec80003",
        "092b75b3e0d756aad9a2aea2cbf6e49afd2e0f615739a4ecd788a455be79f748",
    ),
    "GrantConsent": (
        "98c420dbc298251c51321b7266e78d1c151c2b62aff8cb95b293096d3463018544face91c4201c49a083a74ed4445c80"
        "4cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbb92a8656d706c6f796572ac6d6f6e74686c795f62617365b46d6f"
        "727467616765206170706c69636174696f6ecf0000018c6a64300003c420fd61e83a54c7fe86def39246ced9d83d17ff"
        "4856683446913f9c4efcf8fd5fadc4204f300c78a52c594e19b36fdc3ff835b5e980ebeae588fad02c8a5f9bad7facca",
        "33d0badfcbae61fa66d8f0640a08b87ba721aa3777d80cf58cdc164a7a16b684",
    ),
    "RejectConsent": (
        "92c4206ab1bbdd14b27a1d8657aef564508b9c0ea36980e03e034557550fa2ccbffccca0",
        "aa8179580afab70ec55f960b6a51f91e30011c0b7257834276a601539245e636",
    ),
    "RevokeConsent": (
        "91c42000d1c1c9f0bcc58c43e6d0b1c69ce3c8250dd42a15f9127dc42eb95303c4bec6",
        "384ae588ed343d19d26bb83d2e305d463b971d964b488165352a1cb7f9841ca9",
    ),
    "RecordAccess": (
        "92c42000d1c1c9f0bcc58c43e6d0b1c69ce3c8250dd42a15f9127dc42eb95303c4bec6c4201c49a083a74ed4445c804c"
        "c9cb9ab63d9be7d9451073ab200bc41a2c7131afbb",
        "f5171f6abb845b05280e26c571ec901ad4a7caf58b760b6cd876754798e3e5c0",
    ),
    "SubmitEvidence": (
        "919297010200c400cf0000018bcfe57035c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505"
        "f3c97ec4407fe5db4ae09e95327150961a13d0dc8bcb892c50e9993d20b349a53891d953372e2af5ae5dc7a92d409d68"
        "8d346723300c8d8127818f49fbcc473008ffebe90a97010200c420eb1c938e92ff858de1040f98c796c007a5cfe1dabe"
        "d49f6e9d6780b582072f73cf0000018bcfe57034c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42"
        "866505f3c97ec440811bd9f9a5d566fe2752874662349bb3786741913e816b44fa76942d8327b414cddc7a8c557de0b3"
        "79d3b96fcee4508e80f1c98797e2ff9c620d9a773da3ab05",
        "4081bd6fefd742122ab373a6dbe02a87cc2ca0a8509fb509fcb6e63ee1c835ed",
    ),
    "Proposal": (
        "97020000c420eb1c938e92ff858de1040f98c796c007a5cfe1dabed49f6e9d6780b582072f73cf0000018bcfe56fd0c4"
        "206a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827c440ff470d768ed6b85e59cefada61"
        "e7c4d8b31f459873bc449598ed945ef21b817cfe5b15ea14bb1bda5272d55173cb956054b6704d7333423a8469151299"
        "8ded0e",
        "ff52f951bf690ef455749ee4598fc243261691a6fee29898692ada67dba48f05",
    ),
    "ProposalMessage": (
        "9297020000c420eb1c938e92ff858de1040f98c796c007a5cfe1dabed49f6e9d6780b582072f73cf0000018bcfe56fd0"
        "c4206a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827c440ff470d768ed6b85e59cefada"
        "61e7c4d8b31f459873bc449598ed945ef21b817cfe5b15ea14bb1bda5272d55173cb956054b6704d7333423a84691512"
        "998ded0e939cab6d79646174612d7465737402cf0000018bcfe56fd0c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fd"
        "b5e9a13d81cf15fb83cc19e16ee6c420b9d71f01188adac27038ad923e28c5f2739d8c8a064afe8ef8b9852b3e4553d4"
        "01c420beac9b5806361cb54e66afb900fc03bbca4f9fae0c950bde65b24987e562d6fac4203b0980da879d7848777214"
        "5bcb7678f4279758c331696f2fb0343cadc7c4a9ebc4205e0b25223244673ce833f905af835a85956fc68b72f9a1cbfc"
        "6fd189d871d96bc42062d26085f6ec5e5a38db461b1fd44abe094e1e49631bc1ea73906505e82e0b6cc42062d26085f6"
        "ec5e5a38db461b1fd44abe094e1e49631bc1ea73906505e82e0b6cc4206a3803d5f059902a1c6dafbc9ba4729212f7ca"
        "ac08634cc3ae76b27529f0382791c4c897ab6d79646174612d74657374c4205c29b78f10a35a49a6231d08ee840a04bc"
        "c3a37a4f9d46df327dec56b8a9b7c9c4201398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93"
        "ca04ae636f6e73656e742e7265766f6b65c42391c42000d1c1c9f0bcc58c43e6d0b1c69ce3c8250dd42a15f9127dc42e"
        "b95303c4bec6c44059b84e5c7fbee88168a0cd2830e99588ba7efdcab2ad34aa7c45203740bb0c431d91d9199ae887c6"
        "1984ffb1e58e3a1d1e698850eec02f538bb500f78a3cc20f940100c4207dcf24e07bdefa5ccd005e8a72ec91d4f4fdb5"
        "e9a13d81cf15fb83cc19e16ee69393c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3c9"
        "7ecf0000018bcfe56ddcc4404db584626c36b8cb90e82f350ef298e4e0782299ca0687f91977bdb2c9b2ff522ac4c758"
        "9557ac1821946d538e82f17913a405d4b4b99250ee3111ff5537840293c4206a3803d5f059902a1c6dafbc9ba4729212"
        "f7caac08634cc3ae76b27529f03827cf0000018bcfe56dddc440bdd1aec8b745e9a7bedd1869840b605868dc8051ce0f"
        "79297fa36dbbb443c78c46edef5249c5942175a08e5849d966fddea27679ff1adaba0279eacb845f880493c420b62e86"
        "7fa2f33afe62d5d6b1642e1621d543307846b2a57b897e710919b76709cf0000018bcfe56ddec44090ba6db10493cdb5"
        "d8f9401727a833a03ede984fc6b3e36db198112a1cef9adb2765a419e1cdc2edb0f5e6f9fb6031975a14003bca57e60c"
        "9489e3924c9cba00",
        "9efde208e9a87ab740234462f25a0e610fa9fe0ab55496b96816caca9aa806af",
    ),
    "Evidence": (
        "9297010200c400cf0000018bcfe57035c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505f3"
        "c97ec4407fe5db4ae09e95327150961a13d0dc8bcb892c50e9993d20b349a53891d953372e2af5ae5dc7a92d409d688d"
        "346723300c8d8127818f49fbcc473008ffebe90a97010200c420eb1c938e92ff858de1040f98c796c007a5cfe1dabed4"
        "9f6e9d6780b582072f73cf0000018bcfe57034c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf4286"
        "6505f3c97ec440811bd9f9a5d566fe2752874662349bb3786741913e816b44fa76942d8327b414cddc7a8c557de0b379"
        "d3b96fcee4508e80f1c98797e2ff9c620d9a773da3ab05",
        "993104dae36650dd21b0fb0f43a21d32d98a653d22493096327519a7e475ce0c",
    ),
    "EvidenceRecord": (
        "939297010200c400cf0000018bcfe57035c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42866505"
        "f3c97ec4407fe5db4ae09e95327150961a13d0dc8bcb892c50e9993d20b349a53891d953372e2af5ae5dc7a92d409d68"
        "8d346723300c8d8127818f49fbcc473008ffebe90a97010200c420eb1c938e92ff858de1040f98c796c007a5cfe1dabe"
        "d49f6e9d6780b582072f73cf0000018bcfe57034c42034750f98bd59fcfc946da45aaabe933be154a4b5094e1c4abf42"
        "866505f3c97ec440811bd9f9a5d566fe2752874662349bb3786741913e816b44fa76942d8327b414cddc7a8c557de0b3"
        "79d3b96fcee4508e80f1c98797e2ff9c620d9a773da3ab05c4207599776c3085e3f9da0d13071eb0b4ab50fd2bf64c06"
        "dd92c2365af3a328eca303",
        "bb4f2ff85232b5a705045a5a2244ce66839a0a4d3f6040166946fbb7b0be24d7",
    ),
    "GenesisMember": (
        "94a662757265617591a561646d696ec4206e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505b"
        "f1c420c1c6f3d6c360c02306a85df378ad46e2365b928301d0bf18a2c480f8928c0334",
        "ef7d71d7f4d8626e7e0e146be994fa5480633d45142a62b683744d62f8c62b74",
    ),
    "GenesisSchema": (
        "93b0736f6369616c2e696e737572616e636593a8656d706c6f796572ac6d6f6e74686c795f62617365a573696e636591"
        "c420fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb33e252ef7ff552263889",
        "1469ae24cef7cd627cee128652c21b78776f19a1d724e0dec72f243dfb457c09",
    ),
    "AppGenesis": (
        "939494a662757265617591a561646d696ec4206e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80"
        "505bf1c420c1c6f3d6c360c02306a85df378ad46e2365b928301d0bf18a2c480f8928c033494af7075626c69632d7365"
        "63757269747991a9726567697374726172c4208a875fff1eb38451577acd5afee405456568dd7c89e090863a0557bc7a"
        "f49f17c420a81112c7b17f9334a0f7fff5dbc8238a8ac128829610b933c730a47c8e07626694af736f6369616c2d7365"
        "63757269747991a6697373756572c420ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        "c42068430c801ec2edca5d537f4d24284e7dcfeee1c0000d06b523b5824803518b0094a462616e6b91a8636f6e73756d"
        "6572c420fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618c420e01e2df4f6c166cbbc2b"
        "a185bee6ab3b51d206f34fb81c5c5d1ff4668581205d019193b0736f6369616c2e696e737572616e636593a8656d706c"
        "6f796572ac6d6f6e74686c795f62617365a573696e636591c420fe812c12f3ab4ce6ac5db69ac352f906cb1b11ef43fb"
        "33e252ef7ff552263889",
        "40b73d98de0bc97a764024d544ecb47c5319e9ef3a5713cebe2bd640b122c870",
    ),
    "TxResult": (
        "92a26f6bc42000d1c1c9f0bcc58c43e6d0b1c69ce3c8250dd42a15f9127dc42eb95303c4bec6",
        "07851187ec8ed3493955dbbc6fd1c74ab8c3529a3051a447d13f4715ed70528b",
    ),
    "LastBlock": (
        "9502c420eb1c938e92ff858de1040f98c796c007a5cfe1dabed49f6e9d6780b582072f73cf0000018bcfe56fd0c4205e"
        "0b25223244673ce833f905af835a85956fc68b72f9a1cbfc6fd189d871d96b919493c4208a88e3dd7409f195fd52db2d"
        "3cba5d72ca6709bf1d94121bf3748801b40f6f5c0aa2763193c4208139770ea87d175f56a35466c34c7ecccb8d8a91b4"
        "ee37a25df60f5b8fc9b39414a2763293c420ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac87"
        "37d11ea2763393c420ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c28a27634",
        "a59e5c45b28b6a652adba42f8fd7c931bbbcbe220815d1575c00a5c2e7605fa9",
    ),
    "Tx signing bytes": (
        "0c6d79646174612f74782f76310b6d79646174612d7465737495c4205c29b78f10a35a49a6231d08ee840a04bcc3a37a"
        "4f9d46df327dec56b8a9b7c9c4201398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93ca03ad"
        "636f6e73656e742e6772616e74c4c098c420dbc298251c51321b7266e78d1c151c2b62aff8cb95b293096d3463018544"
        "face91c4201c49a083a74ed4445c804cc9cb9ab63d9be7d9451073ab200bc41a2c7131afbb92a8656d706c6f796572ac"
        "6d6f6e74686c795f62617365b46d6f727467616765206170706c69636174696f6ecf0000018c6a64300003c420fd61e8"
        "3a54c7fe86def39246ced9d83d17ff4856683446913f9c4efcf8fd5fadc4204f300c78a52c594e19b36fdc3ff835b5e9"
        "80ebeae588fad02c8a5f9bad7facca",
        "d6408fd79eab0db1795dab43ec05c1b15ed41f7ba1c1c93c38aa75be0ece477d",
    ),
    "Vote signing bytes": (
        "0e6d79646174612f766f74652f76310b6d79646174612d7465737496020100c4207dcf24e07bdefa5ccd005e8a72ec91"
        "d4f4fdb5e9a13d81cf15fb83cc19e16ee6cf0000018bcfe56ddcc42034750f98bd59fcfc946da45aaabe933be154a4b5"
        "094e1c4abf42866505f3c97e",
        "2e9067f148ad22c2eb8d1c1f9f58b8255a2ba87717516428f63f61423d600620",
    ),
}



# ------------------------------------------------------------------------------------------ the tests


def test_every_structure_has_a_golden_vector() -> None:
    names = {cls.__name__ for cls in struct_classes()}
    assert len(names) == len(struct_classes()), "two Struct classes share a name"
    assert set(INSTANCES) == names, (
        f"gen_vectors.instances() lacks {sorted(names - set(INSTANCES))}, "
        f"has unknown {sorted(set(INSTANCES) - names)}")
    for name, x in INSTANCES.items():
        assert type(x).__name__ == name
    assert set(GOLDEN) == names | {"Tx signing bytes", "Vote signing bytes"}
    assert set(VECTORS) == set(GOLDEN)


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_bytes_and_hash(name: str) -> None:
    hex_, sha = GOLDEN[name]
    data = VECTORS[name]
    assert data.hex() == hex_, f"{name}: the canonical bytes changed:\n got  {data.hex()}\n want {hex_}"
    assert hashlib.sha256(bytes.fromhex(hex_)).hexdigest() == sha


@pytest.mark.parametrize("name", sorted(INSTANCES))
def test_golden_bytes_decode_to_the_instance(name: str) -> None:
    x = INSTANCES[name]
    cls = type(x)
    raw = bytes.fromhex(GOLDEN[name][0])
    y = cls.decode(raw)
    assert y == x
    # A fresh object (nothing cached from decoding) re-encodes to the same bytes.
    assert dataclasses.replace(y).encode() == raw
    assert cls.from_json(x.to_json()) == x
    if name != "Block":  # a block's hash is its header's hash
        assert x.hash.hex() == GOLDEN[name][1]
    else:
        assert x.hash == INSTANCES["Header"].hash  # type: ignore[attr-defined]


def test_doc_is_current() -> None:
    doc = ROOT / "docs" / "test-vectors.md"
    assert doc.exists(), "docs/test-vectors.md is missing: run PYTHONPATH=. python tests/gen_vectors.py"
    assert doc.read_text(encoding="utf-8") == gv.render(), (
        "docs/test-vectors.md is stale: run PYTHONPATH=. python tests/gen_vectors.py")


def test_doc_lists_every_vector() -> None:
    doc = (ROOT / "docs" / "test-vectors.md").read_text(encoding="utf-8")
    compact = doc.replace("\n", "")
    for name, (hex_, sha) in GOLDEN.items():
        assert f"### {name}\n" in doc
        assert sha in doc
        assert hex_ in compact


# ---- hand-decoding with plain msgpack: the layout is what the protocol says, independently of our decoder


def _unpack(name: str) -> object:
    return msgpack.unpackb(bytes.fromhex(GOLDEN[name][0]), raw=False, use_list=True, strict_map_key=True)


def test_hand_decode_set_threshold_and_params() -> None:
    # fixarray(1) [ positive fixint 2 ]
    assert GOLDEN["SetThreshold"][0] == "9102"
    # fixarray(8): uint32 16777216, uint16 5000, uint32 65536, uint16 1000, uint16 500, uint8 250,
    # uint16 2000, fixint 2
    assert GOLDEN["ConsensusParams"][0] == (
        "98" "ce01000000" "cd1388" "ce00010000" "cd03e8" "cd01f4" "ccfa" "cd07d0" "02")
    assert _unpack("ConsensusParams") == [16 * 1024 * 1024, 5000, 65536, 1000, 500, 250, 2000, 2]


def test_hand_decode_validator() -> None:
    pk = gv.VALIDATORS[0].public_key
    # fixarray(3) [ bin8(32) pubkey, fixint 10, fixstr(2) "v1" ]
    assert GOLDEN["Validator"][0] == "93" + "c420" + pk.hex() + "0a" + "a2" + b"v1".hex()


def test_hand_decode_vote() -> None:
    v = _unpack("Vote")
    assert isinstance(v, list) and len(v) == 7
    block1_hash = INSTANCES["Header"].prev_hash  # type: ignore[attr-defined]
    signer = gv.VALIDATORS[0]
    assert v[:6] == [2, 1, 0, block1_hash, gv.T0 + 1500, account_id(signer.public_key)]
    raw = bytes.fromhex(GOLDEN["Vote"][0])
    # type 2, height 1, round 0 as fixints; the hash as bin8; the time as uint64 (it needs 41 bits)
    assert raw[:6] == bytes.fromhex("97020100c420")
    assert raw[6 + 32] == 0xCF and int.from_bytes(raw[39:47], "big") == gv.T0 + 1500
    # The signature is an Ed25519 signature of the Vote signing bytes, checked with plain PyNaCl.
    sb = bytes.fromhex(GOLDEN["Vote signing bytes"][0])
    nacl.signing.VerifyKey(signer.public_key).verify(sb, v[6])
    payload = msgpack.packb(v[:6], use_bin_type=True)
    assert sb == bytes([14]) + b"mydata/vote/v1" + bytes([11]) + b"mydata-test" + payload


def test_hand_decode_tx_and_its_signing_bytes() -> None:
    t = _unpack("Tx")
    holder = gv.HOLDER
    assert isinstance(t, list) and len(t) == 7
    chain, sender, pubkey, nonce, type_, body, sig = t
    assert (chain, sender, pubkey, nonce, type_) == (
        "mydata-test", account_id(holder.public_key), holder.public_key, 3, "consent.grant")
    assert sender == hashlib.sha256(pubkey).digest()
    raw = bytes.fromhex(GOLDEN["Tx"][0])
    assert raw[:13] == b"\x97\xab" + b"mydata-test"  # fixarray(7), fixstr(11)
    # the body is the GrantConsent vector, carried as bin
    assert body == bytes.fromhex(GOLDEN["GrantConsent"][0])
    g = _unpack("GrantConsent")
    assert isinstance(g, list) and len(g) == 8
    assert g[2] == ["employer", "monthly_base"] and g[3] == "mortgage application" and g[5] == 3
    sb = bytes.fromhex(GOLDEN["Tx signing bytes"][0])
    payload = msgpack.packb([sender, pubkey, nonce, type_, body], use_bin_type=True)
    assert sb == bytes([12]) + b"mydata/tx/v1" + bytes([11]) + b"mydata-test" + payload
    nacl.signing.VerifyKey(pubkey).verify(sb, sig)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(pubkey).verify(signing_bytes(Domain.VOTE, "mydata-test", payload), sig)


def test_hand_decode_block() -> None:
    b = _unpack("Block")
    assert isinstance(b, list) and len(b) == 3
    header, txs, commit = b
    assert header == _unpack("Header")
    assert len(header) == 12 and header[0] == "mydata-test" and header[1] == 2 and header[5] == len(txs) == 1
    assert header[4] == merkle_root(txs)
    assert commit == _unpack("CommitCertificate")
    assert header[6] == hashlib.sha256(bytes.fromhex(GOLDEN["CommitCertificate"][0])).digest()
    height, round_, block_hash, sigs = commit
    assert (height, round_, block_hash) == (1, 0, header[3])
    assert [s[0] for s in sigs] == sorted(s[0] for s in sigs)
    # the block's hash is the SHA-256 of its header's bytes
    assert INSTANCES["Block"].hash.hex() == GOLDEN["Header"][1]


def test_hand_decode_optional_and_lists() -> None:
    lb = _unpack("LastBlock")
    assert isinstance(lb, list) and len(lb) == 5
    assert lb[4] == _unpack("ValidatorSet")
    # An absent optional structure is the empty array (0x90) in the last position.
    from contracts.execute import LastBlock

    x = INSTANCES["LastBlock"]
    none = dataclasses.replace(x, validators=None)
    assert isinstance(none, LastBlock) and none.encode().endswith(b"\x90")
    assert msgpack.unpackb(none.encode())[4] == []
    # unique_sorted lists of strings and hashes stay in order on the wire
    s = _unpack("Schema")
    assert s == ["social.insurance", ["employer", "monthly_base", "since"], [gv.ISSUER_ID], 2]
    # an empty HASH_OR_EMPTY is bin8 of length 0 (c4 00), an empty string the empty fixstr (a0)
    ra = bytes.fromhex(GOLDEN["RequestAsset"][0])
    assert ra.endswith(b"\xc4\x00") and _unpack("RequestAsset") == [gv.ISSUER_ID, "social.insurance", b""]
    rc = bytes.fromhex(GOLDEN["RejectConsent"][0])
    assert rc.endswith(b"\xa0")
