"""Container environment: envFrom, env values, valueFrom, $(VAR) expansion, errors."""

import base64

import pytest

from meshnet.node.envconfig import PodFacts, expand, referenced, resolve_env
from meshnet.node.errors import ConfigError

POD = PodFacts("web-1", "shop", uid="u-1", node_name="node-a", pod_ip="10.244.1.7",
               host_ip="192.168.1.1", labels={"app": "web"})
CMS = {"settings": {"MODE": "blue", "LEVEL": "3", "bad-name": "x"}}
SECRETS = {"creds": {"password": base64.b64encode(b"s3cret").decode()}}


def b64(text):
    return base64.b64encode(text.encode()).decode()


CASES = [
    ("plain values", {"env": [{"name": "A", "value": "1"}]}, {"A": "1"}),
    ("envFrom a ConfigMap skips invalid names",
     {"envFrom": [{"configMapRef": {"name": "settings"}}]},
     {"MODE": "blue", "LEVEL": "3"}),
    ("envFrom a Secret with a prefix", {"envFrom": [{"secretRef": {"name": "creds"},
                                                     "prefix": "DB_"}]},
     {"DB_password": "s3cret"}),
    ("env wins over envFrom", {"envFrom": [{"configMapRef": {"name": "settings"}}],
                               "env": [{"name": "MODE", "value": "green"}]},
     {"MODE": "green", "LEVEL": "3"}),
    ("configMapKeyRef and secretKeyRef", {"env": [
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]},
     {"M": "blue", "P": "s3cret"}),
    ("downward API fields", {"env": [
        {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}]},
     {"N": "web-1", "NS": "shop", "IP": "10.244.1.7", "NODE": "node-a", "APP": "web"}),
    ("$(VAR) expands earlier names, keeps unknown ones, $$ escapes", {"env": [
        {"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-$(NOPE)-$$(A)"}]},
     {"A": "x", "B": "x-$(NOPE)-$(A)"}),
    ("optional missing ConfigMap and key are skipped", {
        "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "zz",
                                                                "optional": True}}}]}, {}),
]


@pytest.mark.parametrize("desc,container,expected", CASES, ids=[c[0] for c in CASES])
def test_resolve_env(desc, container, expected):
    assert resolve_env(container, POD, CMS, SECRETS) == expected


ERRORS = [
    ("missing ConfigMap", {"envFrom": [{"configMapRef": {"name": "nope"}}]},
     'configmap "nope" not found'),
    ("missing Secret", {"env": [{"name": "P", "valueFrom": {"secretKeyRef": {
        "name": "gone", "key": "k"}}}]}, 'secret "gone" not found'),
    ("missing key", {"env": [{"name": "P", "valueFrom": {"configMapKeyRef": {
        "name": "settings", "key": "zz"}}}]}, "couldn't find key zz in ConfigMap settings"),
    ("unsupported field", {"env": [{"name": "X", "valueFrom": {"fieldRef": {
        "fieldPath": "spec.bogus"}}}]}, "unsupported fieldRef fieldPath 'spec.bogus'"),
]


@pytest.mark.parametrize("desc,container,message", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_are_create_container_config_errors(desc, container, message):
    with pytest.raises(ConfigError) as info:
        resolve_env(container, POD, CMS, SECRETS)
    assert info.value.reason == "CreateContainerConfigError"
    assert message in info.value.message


def test_expand_alone():
    assert expand("$(A)$(B)", {"A": "1"}) == "1$(B)"


def test_referenced_collects_env_and_volume_sources():
    spec = {"containers": [{"envFrom": [{"configMapRef": {"name": "a"}},
                                        {"secretRef": {"name": "s1"}}],
                            "env": [{"name": "x", "valueFrom": {"configMapKeyRef": {
                                "name": "b", "key": "k"}}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "c"}},
                        {"name": "w", "secret": {"secretName": "s2"}}]}
    assert referenced(spec) == (frozenset({"a", "b", "c"}), frozenset({"s1", "s2"}))
