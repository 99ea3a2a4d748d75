"""Storage with etcd semantics: the interface (`base`), its backends and `open_store`."""

from __future__ import annotations

import os

from .base import (Compacted, Event, KeyExists, KeyNotFound, KeyValue, Op, RevisionMismatch,
                   Store, StoreError, WatchClosed, Watcher)
from .etcd import EtcdStore, WatchCompacted, parse_etcd_url
from .sqlite import SQLiteStore

__all__ = [
    "BackendNotImplemented", "Compacted", "EtcdStore", "Event", "KeyExists", "KeyNotFound", "KeyValue", "Op",
    "RevisionMismatch",
    "SQLiteStore", "Store", "StoreError", "WatchClosed", "WatchCompacted", "Watcher",
    "open_store",
]

DEFAULT_DB_NAME = "store.db"


class BackendNotImplemented(StoreError, NotImplementedError):
    """The URL names a backend this version does not have yet."""


def open_store(url: str, data_dir: str, **options: object) -> Store:
    """The store a `--store` URL names (not started yet: `await store.start()`).

    "" or "sqlite"          -> SQLite at <data_dir>/store.db (the default)
    "sqlite:///abs/path.db" -> SQLite at that absolute path
    "etcd://host:port[,host:port...][?prefix=/meshnet]"
                            -> etcd (its JSON gateway on the client port), keys under prefix
                               (default /meshnet); requests fail over between the endpoints
    "etcds://..."           -> not available yet (TLS to etcd)
    `options` go to the backend's constructor (e.g. history_seconds).
    """
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
        raise BackendNotImplemented(f"store URL {url!r}: TLS to etcd is not implemented yet; "
                                    "use etcd:// on a trusted network (loopback, the lab "
                                    "underlay) for now")
    raise StoreError(f"store URL {url!r}: unsupported scheme; use '' or 'sqlite' "
                     f"(<data_dir>/{DEFAULT_DB_NAME}), 'sqlite:///absolute/path.db' or "
                     "'etcd://host:port[,host:port...]'")
