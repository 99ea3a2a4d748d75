"""The Node object the agent registers, and its Ready heartbeat (pure parts)."""

from meshnet.node.registration import build_node, machine_capacity, node_status

INFO = {"architecture": "amd64", "operatingSystem": "linux"}
CAPACITY = {"cpu": "4", "memory": "1000Ki", "pods": "110"}


def status(now, previous=None, ready=True):
    return node_status(ip="192.168.1.5", hostname="h", port=10250, now=now, capacity=CAPACITY,
                       info=INFO, previous=previous, ready=ready)


def test_node_carries_addresses_capacity_endpoint_and_cidr():
    node = build_node("n1", labels={"role": "x"}, pod_cidr="10.244.3.0/24",
                      status=status("t0"))
    assert node["spec"] == {"podCIDR": "10.244.3.0/24", "podCIDRs": ["10.244.3.0/24"]}
    assert node["metadata"]["labels"] == {"kubernetes.io/hostname": "n1",
                                          "kubernetes.io/os": "linux",
                                          "kubernetes.io/arch": "amd64", "role": "x"}
    st = node["status"]
    assert st["addresses"][0] == {"type": "InternalIP", "address": "192.168.1.5"}
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert st["capacity"] == st["allocatable"] == CAPACITY


def test_no_cidr_leaves_spec_to_the_control_plane():
    assert build_node("n1", labels={}, pod_cidr="", status=status("t0"))["spec"] == {}


def test_ready_heartbeat_keeps_the_transition_time():
    first = status("t0")
    second = status("t1", previous=first)
    ready = second["conditions"][0]
    assert (ready["status"], ready["lastHeartbeatTime"], ready["lastTransitionTime"]) == \
        ("True", "t1", "t0")
    down = status("t2", previous=second, ready=False)["conditions"][0]
    assert (down["status"], down["lastTransitionTime"], down["reason"]) == \
        ("False", "t2", "KubeletNotReady")


def test_machine_capacity_reads_this_machine():
    cap = machine_capacity()
    assert int(cap["cpu"]) >= 1 and cap["memory"].endswith("Ki") and cap["pods"] == "110"
