"""Kubeconfig loading, merging, resolution and write-back, on tmp files (client-go's rules)."""

import base64
import json
import os

import pytest
import yaml

from meshnet.client.errors import ConfigError
from meshnet.client.kubeconfig import Kubeconfig, default_chain, meshnet_data_dir, precedence

from conftest import python_says

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----\n").decode()


def write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def config(clusters=(), contexts=(), users=(), current=None):
    doc = {"apiVersion": "v1", "kind": "Config",
           "clusters": [{"name": n, "cluster": c} for n, c in clusters],
           "contexts": [{"name": n, "context": c} for n, c in contexts],
           "users": [{"name": n, "user": u} for n, u in users]}
    if current is not None:
        doc["current-context"] = current
    return doc


@pytest.fixture
def two_files(tmp_path):
    a = write(tmp_path / "a" / "config", config(
        clusters=[("meshnet", {"server": "https://127.0.0.1:6443",
                               "certificate-authority-data": CA})],
        contexts=[("meshnet", {"cluster": "meshnet", "user": "admin"})],
        users=[("admin", {"token": "t-admin"})], current="meshnet"))
    b = write(tmp_path / "b" / "config", config(
        clusters=[("other", {"server": "https://10.0.0.1:6443", "insecure-skip-tls-verify": True,
                             "certificate-authority": "ca.crt"}),
                  ("meshnet", {"server": "https://shadowed:1"})],
        contexts=[("other", {"cluster": "other", "user": "bob", "namespace": "web"}),
                  ("meshnet", {"cluster": "other", "user": "bob"})],
        users=[("bob", {"client-certificate": "certs/bob.crt", "client-key-data": CA})],
        current="other"))
    return a, b


# (description, env, explicit, euid, expected paths)
PRECEDENCE = [
    ("--kubeconfig wins", {"KUBECONFIG": "/x:/y", "HOME": "/h"}, "/k", 1000, ["/k"]),
    ("KUBECONFIG list, duplicates and empties dropped", {"KUBECONFIG": "/x::/y:/x",
                                                         "HOME": "/h"}, None, 1000,
     ["/x", "/y"]),
    ("default chain for a user", {"HOME": "/h"}, None, 1000,
     ["/h/.local/share/meshnet/admin.kubeconfig", "/h/.kube/config"]),
    ("default chain for root", {"HOME": "/root"}, None, 0,
     ["/var/lib/meshnet/admin.kubeconfig", "/root/.kube/config"]),
    ("MESHNET_DATA_DIR moves the admin kubeconfig", {"HOME": "/h", "MESHNET_DATA_DIR": "/d"},
     None, 0, ["/d/admin.kubeconfig", "/h/.kube/config"]),
    ("XDG_DATA_HOME is honoured for users", {"HOME": "/h", "XDG_DATA_HOME": "/xdg"}, None,
     1000, ["/xdg/meshnet/admin.kubeconfig", "/h/.kube/config"]),
]


@pytest.mark.parametrize("desc,env,explicit,euid,want", PRECEDENCE,
                         ids=[c[0] for c in PRECEDENCE])
def test_precedence(desc, env, explicit, euid, want):
    paths, is_explicit = precedence(explicit, env, euid)
    assert paths == want
    assert is_explicit is bool(explicit)


def test_default_chain_matches_data_dir():
    env = {"HOME": "/h"}
    assert default_chain(env, 0)[0] == os.path.join(meshnet_data_dir(env, 0), "admin.kubeconfig")


def test_merge_first_file_wins(two_files):
    a, b = two_files
    kc = Kubeconfig.load(env={"KUBECONFIG": f"{a}:{b}"})
    assert kc.current_context == "meshnet"
    assert set(kc.contexts()) == {"meshnet", "other"}
    assert kc.clusters()["meshnet"]["server"] == "https://127.0.0.1:6443"
    conn = kc.connection()
    assert (conn.server, conn.context, conn.user, conn.token) == (
        "https://127.0.0.1:6443", "meshnet", "admin", "t-admin")
    assert conn.ca_data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert conn.namespace == ""


def test_other_context_resolves_relative_paths_against_its_file(two_files):
    a, b = two_files
    kc = Kubeconfig.load(env={"KUBECONFIG": f"{a}:{b}"})
    conn = kc.connection("other")
    assert conn.insecure is True
    assert conn.namespace == "web"
    assert conn.ca_file == str(b.parent / "ca.crt")
    assert conn.cert_file == str(b.parent / "certs/bob.crt")
    assert conn.key_data.startswith(b"-----BEGIN")


def test_overrides(two_files):
    a, _ = two_files
    kc = Kubeconfig.load(env={"KUBECONFIG": str(a)})
    conn = kc.connection(server="https://127.0.0.2:1", token="x", namespace="ns",
                         insecure=True)
    assert (conn.server, conn.token, conn.namespace, conn.insecure) == (
        "https://127.0.0.2:1", "x", "ns", True)


@pytest.mark.parametrize("desc,doc,context,message", [
    ("no files at all", None, None, "no configuration has been provided"),
    ("unknown --context", "ok", "nope", 'context "nope" does not exist'),
    ("context names a missing cluster", config(
        contexts=[("c", {"cluster": "gone", "user": "u"})], users=[("u", {"token": "t"})],
        current="c"), None, 'cluster "gone" (context "c") is not defined'),
    ("exec plugins are refused", config(
        clusters=[("k", {"server": "https://x"})],
        contexts=[("c", {"cluster": "k", "user": "u"})],
        users=[("u", {"exec": {"command": "aws"}})], current="c"), None,
        "exec credential plugin"),
    ("cluster without server", config(
        clusters=[("k", {})], contexts=[("c", {"cluster": "k", "user": "u"})],
        users=[("u", {"token": "t"})], current="c"), None, "has no server defined"),
])
def test_resolution_errors(tmp_path, two_files, desc, doc, context, message):
    if doc is None:
        kc = Kubeconfig.load(env={"KUBECONFIG": str(tmp_path / "missing")})
    elif doc == "ok":
        kc = Kubeconfig.load(env={"KUBECONFIG": str(two_files[0])})
    else:
        kc = Kubeconfig.load(env={"KUBECONFIG": str(write(tmp_path / "k", doc))})
    with pytest.raises(ConfigError) as e:
        kc.connection(context)
    assert message in str(e.value)


def test_unreadable_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("clusters:\n- name: x\n  cluster: [\n")
    with pytest.raises(ConfigError, match=f'error loading config file "{bad}": line'):
        Kubeconfig.load(env={"KUBECONFIG": str(bad)})
    with pytest.raises(ConfigError, match="stat /nope: no such file or directory"):
        Kubeconfig.load("/nope", env={})


def test_json_and_flow_style_files_load_like_yaml(tmp_path, two_files):
    a, _ = two_files
    want = Kubeconfig.load(str(a), env={}).connection(None)
    as_json = tmp_path / "json"
    as_json.write_text(json.dumps(yaml.safe_load(a.read_text())))
    assert Kubeconfig.load(str(as_json), env={}).connection(None) == want
    flow = tmp_path / "flow"  # starts with "{" but is not JSON: still YAML
    flow.write_text(yaml.safe_dump(yaml.safe_load(a.read_text()), default_flow_style=True))
    assert not flow.read_text().startswith('{"')
    assert Kubeconfig.load(str(flow), env={}).connection(None) == want
    broken = tmp_path / "broken"
    broken.write_text('{"clusters": [\n')
    with pytest.raises(ConfigError, match=f'error loading config file "{broken}": line'):
        Kubeconfig.load(str(broken), env={})


def test_a_json_kubeconfig_does_not_load_pyyaml(tmp_path, two_files):
    a, _ = two_files
    as_json = tmp_path / "json"
    as_json.write_text(json.dumps(yaml.safe_load(a.read_text())))
    code = ("import sys; from meshnet.client.kubeconfig import Kubeconfig; "
            f"Kubeconfig.load({str(as_json)!r}, env={{}}).connection(None); "
            "print('yaml' in sys.modules)")
    assert python_says(code) == ["False"]


def test_use_context_writes_to_the_first_file_with_a_current_context(two_files):
    a, b = two_files
    kc = Kubeconfig.load(env={"KUBECONFIG": f"{a}:{b}"})
    written = kc.use_context("other")
    assert written == str(a)
    assert yaml.safe_load(a.read_text())["current-context"] == "other"
    assert yaml.safe_load(b.read_text())["current-context"] == "other"  # untouched
    assert Kubeconfig.load(env={"KUBECONFIG": f"{a}:{b}"}).current_context == "other"
    assert oct(a.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigError, match='no context exists with the name: "nope"'):
        kc.use_context("nope")


def test_set_context_modifies_the_defining_file_and_keeps_the_rest(two_files):
    a, b = two_files
    kc = Kubeconfig.load(env={"KUBECONFIG": f"{a}:{b}"})
    assert kc.set_context("other", namespace="prod") is False
    doc_b = yaml.safe_load(b.read_text())
    ctx = next(c for c in doc_b["contexts"] if c["name"] == "other")["context"]
    assert ctx == {"cluster": "other", "user": "bob", "namespace": "prod"}
    assert doc_b["users"][0]["user"]["client-key-data"] == CA  # rest of the file kept
    # A new context goes to the default file: the first existing one.
    assert kc.set_context("fresh", cluster="meshnet", user="admin") is True
    assert any(c["name"] == "fresh" for c in yaml.safe_load(a.read_text())["contexts"])
    # Clearing a field with an empty value.
    kc.set_context("other", namespace="")
    ctx = next(c for c in yaml.safe_load(b.read_text())["contexts"]
               if c["name"] == "other")["context"]
    assert "namespace" not in ctx


def test_writes_create_the_default_file_when_none_exists(tmp_path):
    target = tmp_path / "new" / "config"
    kc = Kubeconfig.load(env={"KUBECONFIG": str(target)})
    assert kc.set_context("c", cluster="k", user="u") is True
    doc = yaml.safe_load(target.read_text())
    assert doc["kind"] == "Config" and doc["contexts"][0]["name"] == "c"


def test_view_redacts_and_minifies(two_files):
    a, b = two_files
    kc = Kubeconfig.load(env={"KUBECONFIG": f"{a}:{b}"})
    view = kc.view()
    assert [c["name"] for c in view["clusters"]] == ["meshnet", "other"]
    assert view["clusters"][0]["cluster"]["certificate-authority-data"] == "DATA+OMITTED"
    assert view["users"][0]["user"]["token"] == "REDACTED"
    assert view["users"][1]["user"]["client-certificate"] == "certs/bob.crt"  # as written
    raw = kc.view(raw=True)
    assert raw["users"][0]["user"]["token"] == "t-admin"
    mini = kc.view(minify=True)
    assert [c["name"] for c in mini["contexts"]] == ["meshnet"]
    assert [u["name"] for u in mini["users"]] == ["admin"]
