"""The test vectors of docs/wire-format.md, read from the document and checked against the code.

If the code's bytes change, or someone edits a vector in the doc, this fails: the doc cannot
drift from what stunmeshd writes.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from stunmeshd import crypto
from stunmeshd.config import PluginConfig
from stunmeshd.crypto import EndpointRecord
from stunmeshd.stores.exec import ExecStore
from stunmeshd.stores.opendht import encode_envelope, encode_put_body
from stunmeshd.stores.shell import ShellStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"


def read_vectors() -> dict[str, str]:
    block = re.search(r"^```vectors\n(.*?)^```", DOC.read_text(), re.S | re.M)
    assert block, "docs/wire-format.md has no ```vectors block"
    vectors = {}
    for line in block.group(1).splitlines():
        name, sep, value = line.partition(" = ")
        assert sep, f"not a 'name = value' line: {line!r}"
        vectors[name.strip()] = value.strip()
    return vectors


V = read_vectors()


def raw(name: str) -> bytes:
    return bytes.fromhex(V[name])


def test_the_doc_has_every_vector_this_test_checks() -> None:
    used = {
        "key_own", "key_peer", "key_publish", "key_fetch", "a_priv", "b_priv", "a_pub_b64",
        "b_pub_b64", "a_publish_for_b", "b_publish_for_a", "nonce", "plain_go",
        "sealed_go_a_to_b", "plain_stunmeshd", "sealed_stunmeshd_a_to_b", "dht_data",
        "dht_envelope", "dht_put_body", "exec_get", "shell_set",
    }  # fmt: skip
    assert set(V) == used


def test_record_keys() -> None:
    assert crypto.publish_key(raw("key_own"), raw("key_peer")) == V["key_publish"]
    assert crypto.fetch_key(raw("key_own"), raw("key_peer")) == V["key_fetch"]


def test_public_keys_and_publish_keys_of_a_and_b() -> None:
    a_pub, b_pub = crypto.public_key(raw("a_priv")), crypto.public_key(raw("b_priv"))
    assert base64.b64encode(a_pub).decode() == V["a_pub_b64"]
    assert base64.b64encode(b_pub).decode() == V["b_pub_b64"]
    assert crypto.publish_key(a_pub, b_pub) == V["a_publish_for_b"]
    assert crypto.publish_key(b_pub, a_pub) == V["b_publish_for_a"]


@pytest.mark.parametrize("which", ["go", "stunmeshd"])
def test_plaintext_and_sealed_value(which: str) -> None:
    plain = V[f"plain_{which}"].encode()
    record = EndpointRecord.from_json(plain)
    assert record.to_json() == plain  # what we write is byte for byte the vector
    b_pub = crypto.public_key(raw("b_priv"))
    sealed = crypto.seal(plain, raw("a_priv"), b_pub, nonce=raw("nonce"))
    assert sealed == V[f"sealed_{which}_a_to_b"]
    a_pub = crypto.public_key(raw("a_priv"))
    assert crypto.open_record(sealed, raw("b_priv"), a_pub) == record


def test_opendht_envelope_and_put_body() -> None:
    envelope = encode_envelope("stunmesh-v1", 1700000000, V["dht_data"])
    assert envelope == V["dht_envelope"].encode()
    assert encode_put_body(envelope) == V["dht_put_body"].encode()


def recorder(tmp_path: Path, answer: str) -> Path:
    """A real plugin program that keeps its stdin and answers ``answer``."""
    script = tmp_path / "plugin.sh"
    script.write_text(f"#!/bin/sh\ncat > '{tmp_path}/stdin'\nprintf '%s' '{answer}'\n")
    script.chmod(0o755)
    return script


async def test_exec_plugin_request_bytes(tmp_path: Path) -> None:
    cmd = recorder(tmp_path, '{"success":true}')
    store = ExecStore.from_config(PluginConfig(name="x", type="exec", command=str(cmd)))
    assert await store.get(V["a_publish_for_b"]) is None
    assert (tmp_path / "stdin").read_text() == V["exec_get"] + "\n"


async def test_shell_plugin_request_bytes(tmp_path: Path) -> None:
    cmd = recorder(tmp_path, "")
    store = ShellStore.from_config(PluginConfig(name="x", type="shell", command=str(cmd)))
    await store.set(V["a_publish_for_b"], "00ff")
    assert (tmp_path / "stdin").read_text() == V["shell_set"].encode().decode("unicode_escape")
