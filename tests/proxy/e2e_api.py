"""Apply API operations from inside a node namespace (the API server listens on that
namespace's loopback, which the test process cannot reach).

    python e2e_api.py KUBECONFIG < ops.json

ops: a JSON list of {"op": "create"|"replace"|"delete"|"status", "plural": ..., "namespace":
..., "name": ..., "body": {...}}; "status" merges body into the object's status through the
status subresource. Prints each result's kind/name; exits 1 with the API error on failure.
"""

import asyncio
import json
import sys

from meshnet.api.resources import lookup
from meshnet.client.aio import AsyncClient


async def main(kubeconfig: str, ops: list[dict]) -> None:
    client = AsyncClient.from_kubeconfig(kubeconfig)
    try:
        for op in ops:
            info, ns = lookup(op["plural"]), op.get("namespace", "default")
            kind = op["op"]
            if kind == "create":
                out = await client.create(info, ns, op["body"])
            elif kind == "replace":
                current = await client.get(info, ns, op["name"])
                body = dict(op["body"])
                body.setdefault("metadata", {})["resourceVersion"] = \
                    current["metadata"]["resourceVersion"]
                out = await client.replace(info, ns, op["name"], body)
            elif kind == "delete":
                out = await client.delete(info, ns, op["name"])
            elif kind == "status":
                out = await client.patch(info, ns, op["name"], {"status": op["body"]},
                                         subresource="status")
            else:
                raise SystemExit(f"unknown op {kind}")
            print(kind, out.get("kind"), (out.get("metadata") or {}).get("name"), flush=True)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.load(sys.stdin)))
