"""TLS to etcd (`etcds://` with --etcd-cafile/--etcd-certfile/--etcd-keyfile) against a real
etcd serving clients over TLS with --client-cert-auth: the store and the API server work
through it, and each way of getting the certificates wrong fails at once with an error that
names the flag to fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config, watch

from conftest import start_apiserver
from etcd_server import etcd_fixture
from meshnet.control.store import (Compacted, EtcdStore, EtcdTLS, KeyValue, StoreError,
                                   encode_snapshot, open_store, parse_snapshot, restore_snapshot)
from meshnet.control.store.etcd import FAILOVER_TIMEOUT_S

BIN = Path(sys.executable).parent
TIMEOUT_S = 10


etcd = etcd_fixture(tls=True)


def client_tls(etcd) -> EtcdTLS:
    return EtcdTLS(str(etcd.tls.ca), str(etcd.tls.client_cert), str(etcd.tls.client_key))


async def test_the_store_over_tls(etcd, tmp_path):
    store = open_store(f"{etcd.url}?prefix=/tls-store", str(tmp_path),
                       etcd_tls=client_tls(etcd))
    assert isinstance(store, EtcdStore) and store.endpoints[0].startswith("https://")
    await store.start()
    try:
        base = store.revision
        watcher = store.watch("/k/", base)  # a streaming request over TLS too
        await store.create("/k/a", b"1")
        await store.update("/k/a", b"2", expected_mod_revision=base + 1)
        events = [await asyncio.wait_for(anext(watcher), TIMEOUT_S) for _ in range(2)]
        assert [(e.kv.value, e.revision) for e in events] == [(b"1", base + 1), (b"2", base + 2)]
        assert [kv.value for kv in (await store.list("/k/"))[0]] == [b"2"]
        watcher.close()
    finally:
        await store.close()
    restored = open_store(f"{etcd.url}?prefix=/tls-restored", str(tmp_path),
                          etcd_tls=client_tls(etcd))
    await restored.start()
    try:
        snapshot = parse_snapshot(list(encode_snapshot([KeyValue("/k/a", b"2", 1, 2)], 2, 0)))
        revision = await restore_snapshot(restored, snapshot, 100)
        assert (await restored.get("/k/a")).mod_revision == revision > 102
        with pytest.raises(Compacted):
            restored.watch("", 2)
    finally:
        await restored.close()


REFUSED = [
    # (description, which files (CA, client cert and key), message parts)
    ("no client certificate", lambda t: EtcdTLS(str(t.ca)),
     ["refused the TLS connection", "--etcd-certfile/--etcd-keyfile"]),
    ("a CA that did not sign etcd's certificate",
     lambda t: EtcdTLS(str(t.other_ca), str(t.client_cert), str(t.client_key)),
     ["its certificate is not trusted", "--etcd-cafile must name the CA"]),
    ("the system's CAs only", lambda t: EtcdTLS(None, str(t.client_cert), str(t.client_key)),
     ["its certificate is not trusted"]),
]


@pytest.mark.parametrize("files, parts", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
async def test_wrong_certificates_fail_at_once_and_say_which_flag(etcd, tmp_path, files, parts):
    store = open_store(f"{etcd.url}?prefix=/tls-refused", str(tmp_path),
                       etcd_tls=files(etcd.tls))
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await store.start()
    assert time.monotonic() - started < FAILOVER_TIMEOUT_S / 2, "retried a TLS refusal"
    for part in parts:
        assert part in str(info.value)
    assert etcd.members[0].endpoint in str(info.value)


def test_the_api_server_on_tls_etcd(etcd, tmp_path):
    tls = etcd.tls
    flags = ["--store", f"{etcd.url}?prefix=/tls-api", "--etcd-cafile", tls.ca,
             "--etcd-certfile", tls.client_cert, "--etcd-keyfile", tls.client_key]
    server = start_apiserver(tmp_path, list(map(str, flags)))
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", {"metadata": {"name": "over-tls"}})
        seen = [ev["object"].metadata.name for ev in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2)]
        assert seen == ["over-tls"]
    finally:
        server.stop()
    # The same server without its client certificate: a clear error, exit 1, no traceback.
    out = subprocess.run([str(BIN / "meshnet-apiserver"), "--data-dir", str(tmp_path),
                          "--listen", "127.0.0.1:0", *map(str, flags[:4])],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "refused the TLS connection" in out.stderr and "Traceback" not in out.stderr
