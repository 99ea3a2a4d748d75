"""Run inside a lab namespace by test_rtnl.py: drives VipInterface (batched netlink) and prints
what each step returned, as JSON on one line per step."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from meshnet.proxy.addresses import VipInterface
from meshnet.proxy.rtnl import AddressSocket


def shown() -> list[str]:
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return sorted(line.split()[3] for line in out.splitlines()
                  if not line.split()[3].startswith(("127.", "::1")))


def main() -> None:
    count = int(sys.argv[1])
    ips = [f"10.96.{i // 250}.{i % 250 + 1}" for i in range(count)] + ["fd00::10"]
    vip = VipInterface("meshnet0")
    vip.ensure()
    steps = {
        "add": vip.add(ips),
        "shown": shown(),
        "existing": sorted(vip.existing()),
        "add again": vip.add(ips[:3]),
        "remove some": vip.remove(ips[:2]),
        "remove absent": vip.remove(ips[:2]),
        "shown after remove": shown(),
    }
    rtnl = AddressSocket()
    missing_link = max(socket.if_nameindex())[0] + 100
    steps["refused"] = sorted(rtnl.change("add", missing_link, ["10.97.0.1", "10.97.0.2"]).items())
    rtnl.close()
    vip.cleanup()
    steps["shown after cleanup"] = shown()
    print(json.dumps(steps))


if __name__ == "__main__":
    main()
