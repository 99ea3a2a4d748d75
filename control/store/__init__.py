"""Storage with etcd semantics: the interface (`base`), its backends and `open_store`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .base import (Compacted, Event, KeyExists, KeyNotFound, KeyValue, Op, RevisionMismatch,
                   Store, StoreError, StoreNotEmpty, WatchClosed, Watcher)
from .etcd import EtcdStore, WatchCompacted, parse_etcd_url, tls_context
from .snapshot import (DEFAULT_BUMP_REVISION, Snapshot, SnapshotError, encode_snapshot,
                       parse_snapshot, read_snapshot, restore_snapshot, take_snapshot)
from .sqlite import SQLiteStore

__all__ = [
    "Compacted", "DEFAULT_BUMP_REVISION", "EtcdStore", "EtcdTLS", "Event", "KeyExists",
    "KeyNotFound", "KeyValue", "Op", "RevisionMismatch", "SQLiteStore", "Snapshot",
    "SnapshotError", "Store", "StoreError", "StoreNotEmpty", "WatchClosed", "WatchCompacted",
    "Watcher", "encode_snapshot", "open_store", "parse_snapshot", "read_snapshot",
    "restore_snapshot", "take_snapshot",
]

DEFAULT_DB_NAME = "store.db"


@dataclass(frozen=True)
class EtcdTLS:
    """kube-apiserver's --etcd-cafile, --etcd-certfile, --etcd-keyfile (None: not given)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __bool__(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


def open_store(url: str, data_dir: str, *, etcd_tls: EtcdTLS = EtcdTLS(),
               **options: object) -> Store:
    """The store a `--store` URL names (not started yet: `await store.start()`).

    "" or "sqlite"          -> SQLite at <data_dir>/store.db (the default)
    "sqlite:///abs/path.db" -> SQLite at that absolute path
    "etcd://host:port[,host:port...][?prefix=/meshnet]"
                            -> etcd (its JSON gateway on the client port), keys under prefix
                               (default /meshnet); requests fail over between the endpoints
    "etcds://..."           -> the same over TLS; etcd_tls names the CA that signed etcd's
                               certificate (default: the system's CAs) and, for etcd's
                               --client-cert-auth, a client certificate and key
    `options` go to the backend's constructor (e.g. history_seconds).
    """
    if etcd_tls and not url.startswith("etcds://"):
        raise StoreError(f"--etcd-cafile/--etcd-certfile/--etcd-keyfile are for TLS to etcd, "
                         f"but the store URL {url!r} is not etcds://host:port")
    if url in ("", "sqlite"):
        return SQLiteStore(os.path.join(data_dir, DEFAULT_DB_NAME), **options)
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        if not path.startswith("/") or path == "/":
            raise StoreError(f"store URL {url!r}: expected sqlite:///absolute/path.db "
                             "(three slashes, then an absolute path), or just 'sqlite' for "
                             f"{os.path.join(data_dir, DEFAULT_DB_NAME)}")
        return SQLiteStore(path, **options)
    if url.startswith("etcd://"):
        endpoints, prefix = parse_etcd_url(url)
        return EtcdStore(endpoints, prefix=prefix, **options)
    if url.startswith("etcds://"):
        endpoints, prefix = parse_etcd_url(url)
        context = tls_context(etcd_tls.ca_file, etcd_tls.cert_file, etcd_tls.key_file)
        return EtcdStore(endpoints, prefix=prefix, ssl_context=context, **options)
    raise StoreError(f"store URL {url!r}: unsupported scheme; use '' or 'sqlite' "
                     f"(<data_dir>/{DEFAULT_DB_NAME}), 'sqlite:///absolute/path.db', "
                     "'etcd://host:port[,host:port...]' or 'etcds://...' (TLS)")
