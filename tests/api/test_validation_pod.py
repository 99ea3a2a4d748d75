"""Pods: defaults, spec validation (shared with pod templates), and immutability on update."""

import copy

import pytest

from api_cases import DELETE, assert_causes, causes_of, edit
from meshnet.api.resources import lookup
from meshnet.api.validation import default_object
from meshnet.api.validation_pod import default_pull_policy

POD = {
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.16",
                             "ports": [{"name": "http", "containerPort": 8080}]}]},
}


def defaulted(obj):
    obj = copy.deepcopy(obj)
    default_object(lookup("pods"), obj)
    return obj


def test_pod_defaults():
    pod = defaulted(POD)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["enableServiceLinks"] is True
    assert spec["securityContext"] == {}
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["ports"][0]["protocol"] == "TCP"
    assert pod["status"]["phase"] == "Pending"


def test_existing_values_are_kept():
    pod = defaulted(edit(POD, {"spec.restartPolicy": "Never", "status": {"phase": "Running"},
                               "spec.containers[0].imagePullPolicy": "Never"}))
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_host_network_ports_and_requests_from_limits():
    pod = defaulted(edit(POD, {
        "spec.hostNetwork": True,
        "spec.containers[0].resources": {"limits": {"cpu": "500m", "memory": "64Mi"},
                                         "requests": {"cpu": "100m"}}}))
    c = pod["spec"]["containers"][0]
    assert c["ports"][0]["hostPort"] == 8080
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}


# (description, image, expected imagePullPolicy)
PULL_POLICY_CASES = [
    ("tagged", "nginx:1.16", "IfNotPresent"),
    ("untagged means latest", "nginx", "Always"),
    ("explicit latest", "nginx:latest", "Always"),
    ("registry port is not a tag", "localhost:5000/web", "Always"),
    ("registry port and tag", "localhost:5000/web:v2", "IfNotPresent"),
    ("digest only", "nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("latest with digest", "nginx:latest@sha256:" + "a" * 64, "Always"),
    ("built-in image", "meshnet/echo", "Always"),
]


@pytest.mark.parametrize("desc,image,want", PULL_POLICY_CASES,
                         ids=[c[0] for c in PULL_POLICY_CASES])
def test_pull_policy(desc, image, want):
    assert default_pull_policy(image) == want


C0 = "spec.containers[0]"

# (description, changes, expected cause prefixes)
CASES = [
    ("valid", {}, []),
    ("init containers", {"spec.initContainers": [{"name": "init", "image": "busybox"}]}, []),
    ("containers required", {"spec.containers": []}, ["spec.containers: Required value"]),
    ("no spec at all", {"spec": DELETE}, ["spec.containers: Required value"]),
    ("container name required", {C0 + ".name": DELETE},
     ["spec.containers[0].name: Required value"]),
    ("container name is a DNS label", {C0 + ".name": "Web"},
     ['spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist']),
    ("container names unique",
     {"spec.containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]},
     ['spec.containers[1].name: Duplicate value: "a"']),
    ("names unique across init containers",
     {"spec.initContainers": [{"name": "web", "image": "busybox"}]},
     ['spec.containers[0].name: Duplicate value: "web"']),
    ("image required", {C0 + ".image": DELETE}, ["spec.containers[0].image: Required value"]),
    ("image with whitespace", {C0 + ".image": "nginx "},
     ['spec.containers[0].image: Invalid value: "nginx ": must not have leading or trailing '
      "whitespace"]),
    ("containerPort out of range", {C0 + ".ports[0].containerPort": 70000},
     ["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and "
      "65535, inclusive"]),
    ("containerPort required", {C0 + ".ports[0].containerPort": DELETE},
     ["spec.containers[0].ports[0].containerPort: Required value"]),
    ("port name is an IANA_SVC_NAME", {C0 + ".ports[0].name": "http_alt"},
     ['spec.containers[0].ports[0].name: Invalid value: "http_alt": must contain only '
      "alpha-numeric characters"]),
    ("port names unique",
     {C0 + ".ports": [{"name": "http", "containerPort": 80},
                      {"name": "http", "containerPort": 81}]},
     ['spec.containers[0].ports[1].name: Duplicate value: "http"']),
    ("port protocol", {C0 + ".ports[0].protocol": "HTTP"},
     ['spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: '
      '"SCTP", "TCP", "UDP"']),
    ("hostPort must match containerPort on the host network",
     {"spec.hostNetwork": True, C0 + ".ports[0].hostPort": 80},
     ["spec.containers[0].ports[0].hostPort: Invalid value: 80: must match `containerPort` when "
      "`hostNetwork` is true"]),
    ("imagePullPolicy", {C0 + ".imagePullPolicy": "Sometimes"},
     ['spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: '
      '"Always", "IfNotPresent", "Never"']),
    ("terminationMessagePolicy", {C0 + ".terminationMessagePolicy": "Log"},
     ['spec.containers[0].terminationMessagePolicy: Unsupported value: "Log"']),
    ("env name", {C0 + ".env": [{"name": "1BAD", "value": "x"}, {"value": "y"}]},
     ['spec.containers[0].env[0].name: Invalid value: "1BAD": a valid environment variable name',
      "spec.containers[0].env[1].name: Required value"]),
    ("command must be strings", {C0 + ".command": ["sh", 1]},
     ["spec.containers[0].command[1]: Invalid value: 1: must be a string"]),
    ("restartPolicy", {"spec.restartPolicy": "Sometimes"},
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", '
      '"OnFailure"']),
    ("dnsPolicy", {"spec.dnsPolicy": "Cluster"},
     ['spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirst", '
      '"ClusterFirstWithHostNet", "Default", "None"']),
    ("dnsPolicy None needs dnsConfig", {"spec.dnsPolicy": "None"},
     ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]),
    ("dnsConfig nameservers are IPs and at most 3",
     {"spec.dnsPolicy": "None",
      "spec.dnsConfig": {"nameservers": ["1.1.1.1", "x", "8.8.8.8", "9.9.9.9"]}},
     ['spec.dnsConfig.nameservers: Invalid value: ["1.1.1.1","x","8.8.8.8","9.9.9.9"]: must not '
      "have more than 3 nameservers",
      'spec.dnsConfig.nameservers[1]: Invalid value: "x": must be a valid IP address']),
    ("dnsConfig search domains", {"spec.dnsConfig": {"searches": ["svc.cluster.local.", "a_b"]}},
     ['spec.dnsConfig.searches[1]: Invalid value: "a_b": a lowercase RFC 1123 subdomain']),
    ("hostname is a DNS label", {"spec.hostname": "web.1"},
     ['spec.hostname: Invalid value: "web.1": must not contain dots']),
    ("subdomain is a DNS label", {"spec.subdomain": "Web"},
     ['spec.subdomain: Invalid value: "Web": a lowercase RFC 1123 label']),
    ("nodeName is a DNS subdomain", {"spec.nodeName": "Node A"},
     ['spec.nodeName: Invalid value: "Node A": a lowercase RFC 1123 subdomain']),
    ("negative grace period", {"spec.terminationGracePeriodSeconds": -1},
     ["spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to "
      "0"]),
    ("containers of the wrong type", {"spec.containers": {"name": "web"}},
     ['spec.containers: Invalid value: {"name":"web"}: must be a list']),
    ("every failing field at once",
     {C0 + ".name": "Web", C0 + ".image": "", C0 + ".ports[0].containerPort": 0,
      "spec.restartPolicy": "Sometimes", "spec.hostname": "a.b"},
     ['spec.containers[0].name: Invalid value: "Web"',
      "spec.containers[0].image: Required value",
      "spec.containers[0].ports[0].containerPort: Required value",
      'spec.restartPolicy: Unsupported value: "Sometimes"',
      'spec.hostname: Invalid value: "a.b": must not contain dots']),
]


@pytest.mark.parametrize("desc,changes,want", CASES, ids=[c[0] for c in CASES])
def test_validate_pod(desc, changes, want):
    assert_causes(causes_of("pods", edit(POD, changes)), want)


# (description, changes to the stored pod, expected cause prefixes)
UPDATE_CASES = [
    ("no change", {}, []),
    ("image may change", {C0 + ".image": "nginx:1.17"}, []),
    ("activeDeadlineSeconds may change", {"spec.activeDeadlineSeconds": 60}, []),
    ("binding sets nodeName once", {"spec.nodeName": "node-a"}, []),
    ("labels may change", {"metadata.labels": {"a": "b"}}, []),
    ("status may change", {"status.phase": "Running", "status.podIP": "10.244.1.5"}, []),
    ("restartPolicy may not change", {"spec.restartPolicy": "Never"},
     ["spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"]),
    ("ports may not change", {C0 + ".ports[0].containerPort": 9090},
     ["spec: Forbidden: pod updates may not change fields other than"]),
    ("containers may not be added",
     {"spec.containers": POD["spec"]["containers"] + [{"name": "b", "image": "x"}]},
     ["spec.containers: Forbidden: pod updates may not add or remove containers"]),
]


@pytest.mark.parametrize("desc,changes,want", UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES])
def test_pod_update(desc, changes, want):
    assert_causes(causes_of("pods", edit(POD, changes), POD), want)


def test_forbidden_update_names_the_changed_field():
    got = causes_of("pods", edit(POD, {"spec.restartPolicy": "Never"}), POD)
    assert got[0].endswith("(changed: spec.restartPolicy)")


def test_moving_a_bound_pod_is_forbidden():
    bound = edit(POD, {"spec.nodeName": "node-a"})
    assert_causes(causes_of("pods", edit(bound, {"spec.nodeName": "node-b"}), bound),
                  ["spec: Forbidden: pod updates may not change fields"])
