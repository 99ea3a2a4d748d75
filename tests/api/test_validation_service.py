"""Services and Endpoints: defaults, every validation rule, and what updates keep or drop."""

import copy

import pytest

from api_cases import DELETE, MONGODB_SERVICE, NGINX_SERVICE, assert_causes, causes_of, edit
from meshnet.api.resources import lookup
from meshnet.api.validation import default_object, prepare_for_update

SVC = NGINX_SERVICE
EXTERNAL = {"metadata": {"name": "db", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}}
HEADLESS = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None"}}
NODEPORT = edit(SVC, {"spec.type": "NodePort", "spec.ports[0].nodePort": 30080})
LB = edit(SVC, {"spec.type": "LoadBalancer"})


def defaulted(obj):
    obj = copy.deepcopy(obj)
    default_object(lookup("services"), obj)
    return obj


# (description, object, expected spec fields after defaulting; DELETE = must be absent)
DEFAULT_CASES = [
    ("ClusterIP service", SVC, {
        "type": "ClusterIP", "sessionAffinity": "None", "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
        "externalTrafficPolicy": DELETE, "clusterIP": DELETE}),
    ("protocol and targetPort", edit(SVC, {"spec.ports": [{"port": 80}]}),
     {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}),
    ("named targetPort kept", edit(SVC, {"spec.ports": [{"port": 80, "targetPort": "http"}]}),
     {"ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}]}),
    ("NodePort gets externalTrafficPolicy", NODEPORT, {"externalTrafficPolicy": "Cluster"}),
    ("LoadBalancer allocates node ports", LB,
     {"externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True}),
    ("externalIPs make a ClusterIP externally accessible",
     edit(SVC, {"spec.externalIPs": ["192.0.2.10"]}), {"externalTrafficPolicy": "Cluster"}),
    ("ClientIP affinity timeout", edit(SVC, {"spec.sessionAffinity": "ClientIP"}),
     {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
    ("IPv6 clusterIP sets the family", edit(SVC, {"spec.clusterIP": "fd00::10"}),
     {"ipFamilies": ["IPv6"], "clusterIPs": ["fd00::10"]}),
    ("clusterIPs fills clusterIP", edit(SVC, {"spec.clusterIPs": ["10.96.0.20"]}),
     {"clusterIP": "10.96.0.20"}),
    ("ExternalName gets no IP fields", EXTERNAL,
     {"ipFamilies": DELETE, "ipFamilyPolicy": DELETE, "internalTrafficPolicy": DELETE}),
]


@pytest.mark.parametrize("desc,obj,want", DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
def test_defaults(desc, obj, want):
    spec = defaulted(obj)["spec"]
    for key, value in want.items():
        if value is DELETE:
            assert key not in spec, key
        else:
            assert spec[key] == value, key


# (description, base, changes, expected cause prefixes)
CASES = [
    ("valid ClusterIP", SVC, {}, []),
    ("valid multi-port", MONGODB_SERVICE, {}, []),
    ("valid NodePort", NODEPORT, {}, []),
    ("valid LoadBalancer", LB, {"spec.loadBalancerSourceRanges": ["10.0.0.0/8"]}, []),
    ("valid ExternalName, trailing dot", EXTERNAL, {"spec.externalName": "db.example.com."}, []),
    ("valid headless without ports", HEADLESS, {}, []),
    ("valid UDP and TCP on one port",
     edit(SVC, {"spec.ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}), {}, []),
    ("valid named targetPort", SVC, {"spec.ports[0].targetPort": "http-alt"}, []),
    ("unknown type", SVC, {"spec.type": "Internal"},
     ['spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", '
      '"LoadBalancer", "NodePort"']),
    ("ports required", SVC, {"spec.ports": []}, ["spec.ports: Required value"]),
    ("port too large", SVC, {"spec.ports[0].port": 70000},
     ["spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ("port zero", SVC, {"spec.ports[0].port": 0},
     ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ("port missing", SVC, {"spec.ports[0].port": DELETE}, ["spec.ports[0].port: Required value"]),
    ("port of the wrong type", SVC, {"spec.ports[0].port": "80"},
     ['spec.ports[0].port: Invalid value: "80": must be an integer']),
    ("targetPort number out of range", SVC, {"spec.ports[0].targetPort": 65536},
     ["spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"]),
    ("targetPort name too long", SVC, {"spec.ports[0].targetPort": "a-very-long-port-name"},
     ['spec.ports[0].targetPort: Invalid value: "a-very-long-port-name": must be no more than '
      "15 characters"]),
    ("targetPort name needs a letter", SVC, {"spec.ports[0].targetPort": "8080-"},
     ['spec.ports[0].targetPort: Invalid value: "8080-": must contain at least one letter (a-z)',
      'spec.ports[0].targetPort: Invalid value: "8080-": must not begin or end with a hyphen']),
    ("targetPort name uppercase", SVC, {"spec.ports[0].targetPort": "HTTP"},
     ['spec.ports[0].targetPort: Invalid value: "HTTP": must contain only alpha-numeric '
      "characters (a-z, 0-9), and hyphens (-)",
      'spec.ports[0].targetPort: Invalid value: "HTTP": must contain at least one letter']),
    ("port names required with several ports", MONGODB_SERVICE, {"spec.ports[1].name": DELETE},
     ["spec.ports[1].name: Required value"]),
    ("port names unique", MONGODB_SERVICE, {"spec.ports[1].name": "mongodb"},
     ['spec.ports[1].name: Duplicate value: "mongodb"']),
    ("port name is a DNS label", SVC, {"spec.ports[0].name": "Web_Port"},
     ['spec.ports[0].name: Invalid value: "Web_Port": a lowercase RFC 1123 label']),
    ("unsupported protocol", SVC, {"spec.ports[0].protocol": "HTTP"},
     ['spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", '
      '"UDP"']),
    ("duplicate port and protocol", MONGODB_SERVICE, {"spec.ports[1].port": 27017},
     ['spec.ports[1]: Duplicate value: {"port":27017,"protocol":"TCP"}']),
    ("nodePort on ClusterIP", SVC, {"spec.ports[0].nodePort": 30080},
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ("duplicate nodePort", edit(MONGODB_SERVICE, {"spec.type": "NodePort"}),
     {"spec.ports[0].nodePort": 30001, "spec.ports[1].nodePort": 30001},
     ["spec.ports[1].nodePort: Duplicate value: 30001"]),
    ("ExternalName requires externalName", EXTERNAL, {"spec.externalName": DELETE},
     ["spec.externalName: Required value"]),
    ("ExternalName must be a DNS name", EXTERNAL, {"spec.externalName": "Not A Host"},
     ['spec.externalName: Invalid value: "Not A Host": a lowercase RFC 1123 subdomain']),
    ("ExternalName with a clusterIP", EXTERNAL, {"spec.clusterIP": "10.96.0.5"},
     ["spec.clusterIP: Forbidden: may not be set for ExternalName services"]),
    ("ExternalName with IP families", EXTERNAL,
     {"spec.ipFamilies": ["IPv4"], "spec.ipFamilyPolicy": "SingleStack"},
     ["spec.ipFamilies: Forbidden: may not be set for ExternalName services",
      "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"]),
    ("clusterIP not an IP", SVC, {"spec.clusterIP": "10.96.0.300"},
     ['spec.clusterIP: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. '
      "10.9.8.7 or 2001:db8::ffff)"]),
    ("headless NodePort", NODEPORT, {"spec.clusterIP": "None"},
     ['spec.clusterIP: Invalid value: "None": may not be set to \'None\' for NodePort services']),
    ("clusterIPs disagree with clusterIP", SVC,
     {"spec.clusterIP": "10.96.0.5", "spec.clusterIPs": ["10.96.0.6"]},
     ['spec.clusterIPs[0]: Invalid value: "10.96.0.6": must match `clusterIP`']),
    ("family disagrees with clusterIP", SVC,
     {"spec.clusterIP": "10.96.0.5", "spec.ipFamilies": ["IPv6"]},
     ['spec.clusterIP: Invalid value: "10.96.0.5": expected an IPv6 value as indicated by '
      "`ipFamilies[0]`"]),
    ("unknown IP family", SVC, {"spec.ipFamilies": ["IPv5"]},
     ['spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"']),
    ("two families with SingleStack", SVC, {"spec.ipFamilies": ["IPv4", "IPv6"]},
     ['spec.ipFamilies: Invalid value: ["IPv4","IPv6"]: may not have more than one value']),
    ("unknown family policy", SVC, {"spec.ipFamilyPolicy": "Dual"},
     ['spec.ipFamilyPolicy: Unsupported value: "Dual": supported values: "PreferDualStack", '
      '"RequireDualStack", "SingleStack"']),
    ("unknown session affinity", SVC, {"spec.sessionAffinity": "Cookie"},
     ['spec.sessionAffinity: Unsupported value: "Cookie": supported values: "ClientIP", '
      '"None"']),
    ("ClientIP timeout too long", SVC,
     {"spec.sessionAffinity": "ClientIP",
      "spec.sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}},
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be "
      "greater than 0 and less than 86400"]),
    ("ClientIP timeout zero", SVC,
     {"spec.sessionAffinity": "ClientIP",
      "spec.sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}},
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater "
      "than 0 and less than 86400"]),
    ("ClientIP timeout at the limit", SVC,
     {"spec.sessionAffinity": "ClientIP",
      "spec.sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}}, []),
    ("affinity config without ClientIP", SVC,
     {"spec.sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
     ['spec.sessionAffinityConfig: Invalid value: {"clientIP":{"timeoutSeconds":60}}: must not '
      "be set when session affinity is None"]),
    ("selector label syntax", SVC, {"spec.selector": {"app": "nginx", "bad/key/x": "v"}},
     ['spec.selector: Invalid value: "bad/key/x": a qualified name must consist']),
    ("externalIPs must be IPs", SVC, {"spec.externalIPs": ["192.0.2.10", "example.com"]},
     ['spec.externalIPs[1]: Invalid value: "example.com": must be a valid IP address']),
    ("externalIPs may not be loopback", SVC, {"spec.externalIPs": ["127.0.0.1"]},
     ['spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range']),
    ("externalIPs may not be unspecified", SVC, {"spec.externalIPs": ["0.0.0.0"]},
     ['spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)']),
    ("externalIPs may not be link-local", SVC, {"spec.externalIPs": ["169.254.1.1"]},
     ['spec.externalIPs[0]: Invalid value: "169.254.1.1": may not be in the link-local range']),
    ("externalTrafficPolicy on a ClusterIP", SVC, {"spec.externalTrafficPolicy": "Local"},
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
      "externally-accessible services"]),
    ("unknown externalTrafficPolicy", NODEPORT, {"spec.externalTrafficPolicy": "Global"},
     ['spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", '
      '"Local"']),
    ("unknown internalTrafficPolicy", SVC, {"spec.internalTrafficPolicy": "Node"},
     ['spec.internalTrafficPolicy: Unsupported value: "Node"']),
    ("loadBalancerIP on a ClusterIP", SVC, {"spec.loadBalancerIP": "192.0.2.1"},
     ["spec.loadBalancerIP: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    ("bad source range", LB, {"spec.loadBalancerSourceRanges": ["10.0.0.0/33"]},
     ['spec.loadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR']),
]


@pytest.mark.parametrize("desc,base,changes,want", CASES, ids=[c[0] for c in CASES])
def test_validate_service(desc, base, changes, want):
    assert_causes(causes_of("services", edit(base, changes)), want)


ALLOCATED = edit(SVC, {"spec.clusterIP": "10.96.0.20", "spec.clusterIPs": ["10.96.0.20"]})
ALLOCATED_NP = edit(NODEPORT, {"spec.clusterIP": "10.96.0.21", "spec.clusterIPs": ["10.96.0.21"]})

# (description, stored object, new object, expected cause prefixes)
UPDATE_CASES = [
    ("re-applied manifest keeps the allocated clusterIP", ALLOCATED, SVC, []),
    ("changing the clusterIP", ALLOCATED, edit(SVC, {"spec.clusterIP": "10.96.0.99"}),
     ['spec.clusterIP: Invalid value: "10.96.0.99": field is immutable']),
    ("clusterIP may be set when the stored one is empty", SVC,
     edit(SVC, {"spec.clusterIP": "10.96.0.99"}), []),
    ("moving to ExternalName drops the cluster IP", ALLOCATED, EXTERNAL | {
        "metadata": SVC["metadata"]}, []),
    ("leaving ExternalName may take a cluster IP", edit(EXTERNAL, {"metadata": SVC["metadata"]}),
     edit(SVC, {"spec.clusterIP": "10.96.0.30"}), []),
    ("NodePort -> ClusterIP drops the unchanged nodePort and traffic policy", ALLOCATED_NP,
     edit(ALLOCATED_NP, {"spec.type": "ClusterIP"}), []),
    ("NodePort re-applied without nodePort keeps it", ALLOCATED_NP,
     edit(NODEPORT, {"spec.ports[0].nodePort": DELETE}), []),
]


@pytest.mark.parametrize("desc,old,new,want", UPDATE_CASES, ids=[c[0] for c in UPDATE_CASES])
def test_service_update(desc, old, new, want):
    assert_causes(causes_of("services", new, old), want)


def test_prepare_for_update_carries_allocations():
    info = lookup("services")
    old = defaulted(ALLOCATED_NP)
    new = defaulted(edit(NODEPORT, {"spec.ports[0].nodePort": DELETE}))
    prepare_for_update(info, new, old)
    assert new["spec"]["clusterIP"] == "10.96.0.21"
    assert new["spec"]["clusterIPs"] == ["10.96.0.21"]
    assert new["spec"]["ports"][0]["nodePort"] == 30080


def test_prepare_for_update_drops_type_dependent_fields():
    info = lookup("services")
    old = defaulted(edit(LB, {"spec.ports[0].nodePort": 31000, "status": {
        "loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}))
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    prepare_for_update(info, new, old)
    assert "nodePort" not in new["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in new["spec"]
    assert "allocateLoadBalancerNodePorts" not in new["spec"]
    assert "loadBalancer" not in new["status"]


ENDPOINTS = {
    "metadata": {"name": "nginx-service", "namespace": "default"},
    "subsets": [{"addresses": [{"ip": "10.244.1.5", "nodeName": "node-a"}],
                 "notReadyAddresses": [{"ip": "fd00::5"}],
                 "ports": [{"port": 8080}]}],
}

# (description, changes, expected cause prefixes)
ENDPOINTS_CASES = [
    ("valid", {}, []),
    ("no subsets is valid", {"subsets": []}, []),
    ("loopback allowed (the API server on a single host)", {"subsets[0].addresses[0].ip":
                                                            "127.0.0.1"}, []),
    ("address must be an IP", {"subsets[0].addresses[0].ip": "10.244.1"},
     ['subsets[0].addresses[0].ip: Invalid value: "10.244.1": must be a valid IP address']),
    ("address ip required", {"subsets[0].addresses[0].ip": DELETE},
     ["subsets[0].addresses[0].ip: Required value"]),
    ("not-ready address checked too", {"subsets[0].notReadyAddresses[0].ip": "x"},
     ['subsets[0].notReadyAddresses[0].ip: Invalid value: "x": must be a valid IP address']),
    ("subset without addresses",
     {"subsets[0].addresses": [], "subsets[0].notReadyAddresses": []},
     ["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]),
    ("port out of range", {"subsets[0].ports[0].port": 0},
     ["subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    ("bad protocol", {"subsets[0].ports[0].protocol": "ICMP"},
     ['subsets[0].ports[0].protocol: Unsupported value: "ICMP"']),
    ("names required with several ports",
     {"subsets[0].ports": [{"name": "a", "port": 1}, {"port": 2}]},
     ["subsets[0].ports[1].name: Required value"]),
    ("hostname is a DNS label", {"subsets[0].addresses[0].hostname": "web.1"},
     ['subsets[0].addresses[0].hostname: Invalid value: "web.1": must not contain dots']),
]


@pytest.mark.parametrize("desc,changes,want", ENDPOINTS_CASES,
                         ids=[c[0] for c in ENDPOINTS_CASES])
def test_validate_endpoints(desc, changes, want):
    assert_causes(causes_of("endpoints", edit(ENDPOINTS, changes)), want)


def test_endpoint_port_protocol_defaults_to_tcp():
    obj = copy.deepcopy(ENDPOINTS)
    default_object(lookup("endpoints"), obj)
    assert obj["subsets"][0]["ports"][0]["protocol"] == "TCP"
