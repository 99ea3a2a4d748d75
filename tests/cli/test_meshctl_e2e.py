"""meshctl (the installed binary) and real kubectl against a real meshnet-apiserver.

The server runs once for this module on a free loopback port in a fresh data dir (the shared
`apiserver` fixture); both CLIs use the admin kubeconfig it writes. The manifests are the
Kubernetes cheat-sheet ones under tests/cli/manifests/, and commands run in that directory so
that messages name files as a user would see them (`error when creating "x.yaml"`).
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time

import yaml

from .conftest import BIN, MANIFESTS, isolated_env
from .test_create import make_tls_pair

AGE = re.compile(r"\b\d+[smhdy](\d+[smh])?\b")


def lines(text: str) -> list[str]:
    """Table lines with ages blanked (they depend on timing) and trailing spaces dropped."""
    return [AGE.sub("AGE", ln).rstrip() for ln in text.splitlines()]


def ok(result, out: str | None = None):
    assert result.code == 0, result
    if out is not None:
        assert result.out == out, result
    return result


def test_cheat_sheet_flow(meshctl, tmp_path):
    # --- Deployment and Services -------------------------------------------------------
    ok(meshctl("apply", "-f", "nginx-deployment.yaml"),
       "deployment.apps/nginx-deployment created\n")
    ok(meshctl("apply", "-f", "nginx-service.yaml", "-f", "mongodb-service.yaml"),
       "service/nginx-service created\nservice/mongodb-service created\n")

    svc = yaml.safe_load(ok(meshctl("get", "svc", "nginx-service", "-o", "yaml")).out)
    assert svc["kind"] == "Service" and svc["spec"]["selector"] == {"app": "nginx"}
    assert svc["spec"]["ports"][0]["port"] == 80
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    assert "kubectl.kubernetes.io/last-applied-configuration" in svc["metadata"]["annotations"]
    assert "managedFields" not in svc["metadata"]

    table = lines(ok(meshctl("get", "svc,deploy")).out)
    assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert any(ln.startswith("service/nginx-service ") and "80/TCP" in ln for ln in table)
    assert any(ln.startswith("service/mongodb-service ") and "27017/TCP,9216/TCP" in ln
               for ln in table)
    blank = table.index("")
    assert table[blank + 1].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[blank + 2].startswith("deployment.apps/nginx-deployment ")

    described = ok(meshctl("describe", "svc", "mongodb-service")).out
    assert "Name:                     mongodb-service\n" in described
    assert "Selector:                 app=mongodb\n" in described
    assert "Port:                     mongodb  27017/TCP\n" in described
    assert "TargetPort:               9216/TCP\n" in described
    assert "Port:                     mongodb-exporter  9216/TCP\n" in described
    assert "\nEndpoints:" in described and "\nEvents:" in described

    deploy = ok(meshctl("describe", "deployment", "nginx-deployment")).out
    assert "Replicas:               3 desired |" in deploy
    assert "    Image:         nginx:1.14.2\n" in deploy

    # --- ConfigMap in its own namespace ------------------------------------------------
    ok(meshctl("create", "namespace", "my-namespace"), "namespace/my-namespace created\n")
    ok(meshctl("apply", "-f", "configmap.yaml"), "configmap/mysql-configmap created\n")
    cms = lines(ok(meshctl("get", "configmaps", "-n", "my-namespace")).out)
    assert any(ln.split()[:2] == ["mysql-configmap", "1"] for ln in cms)
    described = ok(meshctl("describe", "cm", "mysql-configmap", "-n", "my-namespace")).out
    assert "Data\n====\ndb_url:\n----\nmysql-service.database\n" in described

    # --- Ingresses and the TLS secret --------------------------------------------------
    ok(meshctl("apply", "-f", "kubernetes-dashboard-namespace.yaml", "-f",
               "dashboard-ingress.yaml"),
       "namespace/kubernetes-dashboard created\n"
       "ingress.networking.k8s.io/dashboard-ingress created\n")
    ing = ok(meshctl("describe", "ingress", "dashboard-ingress", "-n",
                     "kubernetes-dashboard")).out
    assert "  dashboard.com  \n" in ing
    assert "/   kubernetes-dashboard:80 (" in ing

    cert, key = make_tls_pair(tmp_path)
    secret_yaml = ok(meshctl("create", "secret", "tls", "myapp-secret-tls", f"--cert={cert}",
                             f"--key={key}", "--dry-run=client", "-o", "yaml")).out
    secret_file = tmp_path / "myapp-secret-tls.yaml"
    secret_file.write_text(secret_yaml)
    ok(meshctl("apply", "-f", str(secret_file), "-f", "tls-ingress.yaml"),
       "secret/myapp-secret-tls created\n"
       "ingress.networking.k8s.io/tls-example-ingress created\n")
    described = ok(meshctl("describe", "secret", "myapp-secret-tls")).out
    assert "Type:  kubernetes.io/tls\n" in described
    assert re.search(r"\ntls\.crt:  \d+ bytes\ntls\.key:  \d+ bytes\n", described)
    described = ok(meshctl("describe", "ing", "tls-example-ingress")).out
    assert "TLS:\n  myapp-secret-tls terminates myapp.com\n" in described
    ingress_yaml = yaml.safe_load(ok(meshctl("get", "ingress", "tls-example-ingress",
                                             "-o", "yaml")).out)
    assert ingress_yaml["spec"]["rules"][0]["http"]["paths"][0]["pathType"] == "Prefix"

    # --- Re-applying is idempotent -----------------------------------------------------
    ok(meshctl("apply", "-f", "nginx-service.yaml", "-f", "tls-ingress.yaml"),
       "service/nginx-service unchanged\n"
       "ingress.networking.k8s.io/tls-example-ingress unchanged\n")

    # --- delete -f ---------------------------------------------------------------------
    ok(meshctl("delete", "-f", "tls-ingress.yaml"),
       'ingress.networking.k8s.io "tls-example-ingress" deleted\n')
    gone = meshctl("get", "ingress", "tls-example-ingress")
    assert gone.code == 1
    assert gone.err == ('Error from server (NotFound): ingresses.networking.k8s.io '
                        '"tls-example-ingress" not found\n')
    again = meshctl("delete", "-f", "tls-ingress.yaml")
    assert again.code == 1
    assert again.err == ('Error from server (NotFound): error when deleting "tls-ingress.yaml": '
                         'ingresses.networking.k8s.io "tls-example-ingress" not found\n')
    ok(meshctl("delete", "-f", "tls-ingress.yaml", "--ignore-not-found"), "")


def test_legacy_backend_ingress_is_refused_with_a_field_error(meshctl):
    result = meshctl("apply", "-f", "legacy-ingress.yaml")
    assert result.code == 1
    assert result.out == ""
    assert result.err.startswith(
        'Error from server (Invalid): error when creating "legacy-ingress.yaml": '
        'Ingress.networking.k8s.io "legacy-backend-ingress" is invalid: '
        "spec.rules[0].http.paths[0].backend")
    assert meshctl("get", "ingress", "legacy-backend-ingress").code == 1


def test_malformed_yaml_names_file_and_line_and_sends_nothing(meshctl):
    result = meshctl("apply", "-f", "malformed.yaml")
    assert result.code == 1
    assert result.err.startswith("error: error parsing malformed.yaml: line 8: ")
    result = meshctl("apply", "-f", "partly-malformed.yaml")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("error: error parsing partly-malformed.yaml: line 15: ")
    # The valid document before the broken one was not sent either.
    missing = meshctl("get", "configmap", "should-not-exist")
    assert missing.code == 1 and "NotFound" in missing.err


def test_unknown_kind_lists_the_supported_ones(meshctl):
    result = meshctl("apply", "-f", "unknown-kind.yaml")
    assert result.code == 1
    assert result.err.startswith(
        'error: resource mapping not found for name: "x" namespace: "" from '
        '"unknown-kind.yaml": no matches for kind "Foo" in version "v1"\n')
    assert "supported kinds: ConfigMap, Deployment" in result.err


def test_kubectl_and_meshctl_share_objects_and_last_applied(meshctl, kubectl):
    ok(meshctl("create", "namespace", "interop"))
    ok(meshctl("apply", "-n", "interop", "-f", "nginx-service.yaml"),
       "service/nginx-service created\n")
    ok(kubectl("apply", "-n", "interop", "-f", "nginx-service.yaml"),
       "service/nginx-service unchanged\n")
    table = lines(ok(kubectl("get", "svc", "-n", "interop")).out)
    assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    ours = lines(ok(meshctl("get", "svc", "-n", "interop")).out)
    assert ours == table  # same server-side Table, same layout
    ok(kubectl("delete", "-n", "interop", "-f", "nginx-service.yaml"),
       'service "nginx-service" deleted from interop namespace\n')  # kubectl 1.33+ wording
    ok(kubectl("apply", "-n", "interop", "-f", "nginx-service.yaml", "-f",
               "mongodb-service.yaml"),
       "service/nginx-service created\nservice/mongodb-service created\n")
    ok(meshctl("apply", "-n", "interop", "-f", "nginx-service.yaml", "-f",
               "mongodb-service.yaml"),
       "service/nginx-service unchanged\nservice/mongodb-service unchanged\n")
    ok(meshctl("delete", "-n", "interop", "-f", "mongodb-service.yaml"),
       'service "mongodb-service" deleted\n')
    ok(kubectl("delete", "-n", "interop", "-f", "nginx-service.yaml"),
       'service "nginx-service" deleted from interop namespace\n')  # kubectl 1.33+ wording
    empty = meshctl("get", "svc", "-n", "interop")
    assert (empty.code, empty.out, empty.err) == (
        0, "", "No resources found in interop namespace.\n")

    # An Ingress created by kubectl, read and re-applied by meshctl, deleted by kubectl.
    ok(kubectl("apply", "-n", "interop", "-f", "tls-ingress.yaml"),
       "ingress.networking.k8s.io/tls-example-ingress created\n")
    ok(meshctl("apply", "-n", "interop", "-f", "tls-ingress.yaml"),
       "ingress.networking.k8s.io/tls-example-ingress unchanged\n")
    assert "myapp-secret-tls terminates myapp.com" in ok(
        meshctl("describe", "ingress", "tls-example-ingress", "-n", "interop")).out
    theirs = lines(ok(kubectl("get", "ingress", "-n", "interop")).out)
    assert theirs == lines(ok(meshctl("get", "ingress", "-n", "interop")).out)
    assert theirs[1].split()[:3] == ["tls-example-ingress", "<none>", "myapp.com"]
    ok(kubectl("delete", "-n", "interop", "-f", "tls-ingress.yaml"),
       'ingress.networking.k8s.io "tls-example-ingress" deleted from interop namespace\n')
    missing = kubectl("get", "ingress", "tls-example-ingress", "-n", "interop")
    assert missing.code == 1
    assert missing.err == ('Error from server (NotFound): ingresses.networking.k8s.io '
                           '"tls-example-ingress" not found\n')


def test_apply_configures_and_prunes_removed_fields(meshctl, tmp_path):
    first = tmp_path / "web.yaml"
    first.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\n"
                     "  labels:\n    app: web\n    tier: front\ndata:\n  a: '1'\n  b: '2'\n")
    ok(meshctl("apply", "-f", str(first)), "configmap/web-config created\n")
    first.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\n"
                     "  labels:\n    app: web\ndata:\n  a: '10'\n")
    ok(meshctl("apply", "-f", str(first)), "configmap/web-config configured\n")
    got = yaml.safe_load(ok(meshctl("get", "cm", "web-config", "-o", "yaml")).out)
    assert got["data"] == {"a": "10"}
    assert got["metadata"]["labels"] == {"app": "web"}
    # A label added by someone else survives a re-apply.
    ok(meshctl("label", "cm", "web-config", "owner=ops"), "configmap/web-config labeled\n")
    ok(meshctl("apply", "-f", str(first)), "configmap/web-config unchanged\n")
    assert ok(meshctl("get", "cm", "web-config", "-o",
                      "jsonpath={.metadata.labels.owner}")).out == "ops"
    dry = ok(meshctl("apply", "-f", str(first), "--dry-run=server"))
    assert dry.out == "configmap/web-config unchanged (server dry run)\n"


def test_get_output_formats(meshctl):
    ok(meshctl("create", "namespace", "formats"))
    ok(meshctl("create", "configmap", "one", "-n", "formats", "--from-literal=k=v"),
       "configmap/one created\n")
    ok(meshctl("create", "configmap", "two", "-n", "formats", "--from-literal=k=w"))
    assert ok(meshctl("get", "cm", "-n", "formats", "-o", "name")).out == \
        "configmap/one\nconfigmap/two\n"
    listed = yaml.safe_load(ok(meshctl("get", "cm", "one", "two", "-n", "formats", "-o",
                                       "yaml")).out)
    assert listed["kind"] == "List"
    assert [i["kind"] for i in listed["items"]] == ["ConfigMap", "ConfigMap"]
    import json
    single = json.loads(ok(meshctl("get", "cm/one", "-n", "formats", "-o", "json")).out)
    assert single["data"] == {"k": "v"}
    out = ok(meshctl("get", "cm", "-n", "formats", "-o",
                     'jsonpath={range .items[*]}{.metadata.name}={.data.k}{"\\n"}{end}')).out
    assert out == "one=v\ntwo=w\n"
    out = ok(meshctl("get", "cm", "-n", "formats", "-o",
                     "custom-columns=NAME:.metadata.name,K:.data.k", "--sort-by=.data.k")).out
    assert out == "NAME   K\none    v\ntwo    w\n"
    everywhere = lines(ok(meshctl("get", "cm", "-A", "-l", "nope=1")).out)
    assert everywhere == []
    allns = lines(ok(meshctl("get", "cm", "-A", "--field-selector",
                             "metadata.namespace=formats")).out)
    assert allns[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [ln.split()[:2] for ln in allns[1:]] == [["formats", "one"], ["formats", "two"]]
    ok(meshctl("label", "cm", "one", "app=demo", "tier=x", "-n", "formats"))
    labeled = lines(ok(meshctl("get", "cm", "-n", "formats", "--show-labels", "-L",
                               "tier")).out)
    assert labeled[0].split() == ["NAME", "DATA", "AGE", "TIER", "LABELS"]
    assert labeled[1].split() == ["one", "1", "AGE", "x", "app=demo,tier=x"]
    assert labeled[2].split() == ["two", "1", "AGE", "<none>"]


def test_label_annotate_expose_and_edit(meshctl, tmp_path):
    ok(meshctl("create", "namespace", "tools"))
    ok(meshctl("create", "deployment", "web", "--image=nginx", "--port=8080", "-n", "tools"),
       "deployment.apps/web created\n")
    ok(meshctl("label", "deploy", "web", "tier=front", "-n", "tools"),
       "deployment.apps/web labeled\n")
    clash = meshctl("label", "deploy/web", "tier=back", "-n", "tools")
    assert clash.code == 1
    assert clash.err == "error: 'tier' already has a value (front), and --overwrite is false\n"
    ok(meshctl("label", "deploy/web", "tier=back", "--overwrite", "-n", "tools"),
       "deployment.apps/web labeled\n")
    ok(meshctl("label", "deploy/web", "tier-", "-n", "tools"),
       "deployment.apps/web unlabeled\n")
    ok(meshctl("annotate", "deploy/web", "owner=team a", "-n", "tools"),
       "deployment.apps/web annotated\n")

    ok(meshctl("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n",
               "tools"), "service/web exposed\n")
    svc = yaml.safe_load(ok(meshctl("get", "svc", "web", "-n", "tools", "-o", "yaml")).out)
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["ports"][0]["port"] == 80
    assert svc["spec"]["ports"][0]["targetPort"] == 8080

    # edit: first save is invalid (port 70000) -> reopened with the error; second fixes it.
    editor = tmp_path / "editor.py"
    seen = tmp_path / "second-round.yaml"
    editor.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[1])\n"
        f"seen = pathlib.Path({str(seen)!r})\n"
        "text = path.read_text()\n"
        "if 'was not valid' not in text:\n"
        "    path.write_text(text.replace('port: 80\\n', 'port: 70000\\n', 1))\n"
        "else:\n"
        "    seen.write_text(text)\n"
        "    path.write_text(text.replace('port: 70000\\n', 'port: 81\\n', 1))\n")
    env = {"EDITOR": f"{sys.executable} {editor}"}
    ok(meshctl("edit", "svc/web", "-n", "tools", extra_env=env), "service/web edited\n")
    second = seen.read_text()
    assert second.startswith("# Please edit the object below.")
    assert '# services "web" was not valid:\n# * spec.ports[0].port: Invalid value: 70000' \
        in second
    assert ok(meshctl("get", "svc", "web", "-n", "tools", "-o",
                      "jsonpath={.spec.ports[0].port}")).out == "81"
    ok(meshctl("edit", "svc", "web", "-n", "tools", extra_env={"EDITOR": "true"}),
       "Edit cancelled, no changes made.\n")


class _LineReader:
    """Lines from a child's stdout with a deadline (raw fd reads: no hidden buffering)."""

    def __init__(self, proc: subprocess.Popen):
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def line(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(timeout=left):
                raise AssertionError(f"no line from meshctl get --watch in time: {self.buf!r}")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"meshctl get --watch exited: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def test_get_watch_prints_new_objects(meshctl, cluster_env):
    ok(meshctl("create", "namespace", "watched"))
    ok(meshctl("create", "configmap", "first", "-n", "watched", "--from-literal=a=b"))
    proc = subprocess.Popen([str(BIN / "meshctl"), "get", "cm", "-n", "watched", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=cluster_env)
    reader = _LineReader(proc)
    try:
        assert reader.line(20).split()[:2] == ["NAME", "DATA"]
        assert reader.line(20).split()[:2] == ["first", "1"]
        ok(meshctl("create", "configmap", "second", "-n", "watched", "--from-literal=a=b"))
        assert reader.line(20).split()[:2] == ["second", "1"]
        ok(meshctl("delete", "configmap", "first", "-n", "watched"))
        assert reader.line(20).split()[:2] == ["first", "1"]
    finally:
        proc.kill()
        proc.wait(10)


def test_discovery_and_info_commands(meshctl):
    table = lines(ok(meshctl("api-resources")).out)
    assert table[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["services", "svc", "v1", "true", "Service"] in [ln.split() for ln in table]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in \
        [ln.split() for ln in table]
    cluster_scoped = ok(meshctl("api-resources", "--namespaced=false", "-o", "name")).out
    assert "namespaces\n" in cluster_scoped and "services\n" not in cluster_scoped
    version = ok(meshctl("version")).out
    assert version.startswith("Client Version: v0.1.0\nServer Version: v1.")
    info = ok(meshctl("cluster-info")).out
    assert info.startswith("Kubernetes control plane is running at https://127.0.0.1:")
    everything = lines(ok(meshctl("get", "all", "-n", "kube-system")).out)
    assert any(ln.startswith("service/kube-dns ") for ln in everything)


def test_config_commands_on_a_copy_of_the_kubeconfig(apiserver, tmp_path):
    copy = tmp_path / "config"
    copy.write_text(apiserver.kubeconfig.read_text())
    env = isolated_env(tmp_path, copy)
    meshctl = BIN / "meshctl"

    def run(*argv):
        return subprocess.run([str(meshctl), *argv], capture_output=True, text=True, env=env,
                              timeout=60)

    current = run("config", "current-context")
    assert current.returncode == 0
    name = current.stdout.strip()
    contexts = run("config", "get-contexts").stdout.splitlines()
    assert contexts[0].split() == ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
    assert contexts[1].split()[:2] == ["*", name]
    done = run("config", "set-context", "--current", "--namespace=kube-system")
    assert done.stdout == f'Context "{name}" modified.\n'
    assert "kube-dns" in run("get", "svc").stdout
    assert run("config", "set-context", "spare", f"--cluster={name}").stdout == \
        'Context "spare" created.\n'
    assert run("config", "use-context", "spare").stdout == 'Switched to context "spare".\n'
    assert run("config", "current-context").stdout == "spare\n"
    missing = run("config", "use-context", "nope")
    assert (missing.returncode, missing.stderr) == (
        1, 'error: no context exists with the name: "nope"\n')
    view = yaml.safe_load(run("config", "view").stdout)
    assert view["users"][0]["user"]["token"] == "REDACTED"
    assert view["clusters"][0]["cluster"]["certificate-authority-data"] == "DATA+OMITTED"


def test_transport_errors_are_kubectl_style(apiserver, tmp_path, meshctl):
    refused = meshctl("get", "svc", "--server", "https://127.0.0.1:1")
    assert refused.code == 1
    assert refused.err == ("The connection to the server 127.0.0.1:1 was refused - did you "
                           "specify the right host or port?\n")
    bad_token = meshctl("get", "svc", "--token", "wrong")
    assert bad_token.code == 1
    assert bad_token.err.startswith("error: You must be logged in to the server (")
    # A kubeconfig whose CA is not the server's: the TLS handshake must fail, not be skipped.
    wrong_ca = tmp_path / "wrong-ca.crt"
    cert, _ = make_tls_pair(tmp_path)
    wrong_ca.write_bytes(cert.read_bytes())
    tls = meshctl("get", "svc", f"--certificate-authority={wrong_ca}")
    assert tls.code == 1
    assert tls.err.startswith("Unable to connect to the server: tls: failed to verify "
                              "certificate")
    insecure = meshctl("get", "svc", f"--certificate-authority={wrong_ca}",
                       "--insecure-skip-tls-verify")
    assert insecure.code == 0


def test_delete_by_selector_and_all(meshctl):
    ok(meshctl("create", "namespace", "cleanup"))
    for name in ("a", "b", "c"):
        ok(meshctl("create", "configmap", name, "-n", "cleanup", "--from-literal=x=y"))
    ok(meshctl("label", "cm", "a", "b", "group=ab", "-n", "cleanup"),
       "configmap/a labeled\nconfigmap/b labeled\n")
    ok(meshctl("delete", "cm", "-l", "group=ab", "-n", "cleanup"),
       'configmap "a" deleted\nconfigmap "b" deleted\n')
    refused = meshctl("delete", "cm", "-n", "cleanup")
    assert (refused.code, refused.err) == (
        1, "error: resource(s) were provided, but no name was specified\n")
    ok(meshctl("delete", "cm", "--all", "-n", "cleanup"), 'configmap "c" deleted\n')
    nothing = meshctl("delete", "cm", "--all", "-n", "cleanup")
    assert (nothing.code, nothing.err) == (0, "No resources found\n")
    ok(meshctl("delete", "namespace", "cleanup"), 'namespace "cleanup" deleted\n')
    assert meshctl("get", "ns", "cleanup").code == 1


def test_manifests_directory_is_complete():
    # Every cheat-sheet manifest the flow uses is in the repository.
    expected = {"nginx-deployment.yaml", "nginx-service.yaml", "mongodb-service.yaml",
                "my-namespace.yaml", "configmap.yaml", "dashboard-ingress.yaml",
                "kubernetes-dashboard-namespace.yaml", "tls-ingress.yaml",
                "legacy-ingress.yaml", "malformed.yaml", "partly-malformed.yaml",
                "unknown-kind.yaml"}
    assert expected <= set(os.listdir(MANIFESTS))


def test_describe_pod_node_and_generic(meshctl, tmp_path):
    objects = tmp_path / "objects.yaml"
    objects.write_text(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels:\n"
        "    node-role.kubernetes.io/worker: ''\nspec:\n  podCIDR: 10.244.1.0/24\n---\n"
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-pod\n  labels: {app: web}\n"
        "spec:\n  containers:\n  - name: web\n    image: nginx\n"
        "    ports: [{containerPort: 80, name: http}]\n---\n"
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: my-lease\n"
        "spec:\n  holderIdentity: me\n")
    ok(meshctl("apply", "-f", str(objects)),
       "node/node-1 created\npod/web-pod created\nlease.coordination.k8s.io/my-lease created\n")
    node = ok(meshctl("describe", "node", "node-1")).out
    assert "Roles:                worker\n" in node
    assert "PodCIDR:              10.244.1.0/24\n" in node
    pod = ok(meshctl("describe", "pod", "web-pod")).out
    assert re.search(r"\nContainers:\n  web:\n    Image: +nginx\n    Port: +80/TCP \(http\)\n",
                     pod), pod
    lease = ok(meshctl("describe", "lease", "my-lease")).out
    assert "Spec:\n  Holder Identity:  me\n" in lease
    # describe with a name prefix, as kubectl does (ages blanked: the scheduler's Events age)
    assert lines(ok(meshctl("describe", "pods", "web")).out) == lines(pod)
    ok(meshctl("delete", "-f", str(objects)),
       'node "node-1" deleted\npod "web-pod" deleted\n'
       'lease.coordination.k8s.io "my-lease" deleted\n')
