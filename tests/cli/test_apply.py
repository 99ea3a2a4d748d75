"""apply's checks before anything is sent: every problem in every file, reported together."""

import pytest

SVC = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{ns}spec:\n  ports:\n  - port: 80\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_all_problems_are_reported_and_nothing_is_sent(cli, tmp_path):
    # No kubeconfig at all: if meshctl tried to send anything it would fail differently.
    a = write(tmp_path, "a.yaml", SVC.format(name="ok", ns="") + "---\nkind: Foo\n"
              "apiVersion: example.com/v1\nmetadata:\n  name: x\n")
    b = write(tmp_path, "b.yaml", SVC.format(name="", ns=""))
    result = cli("apply", "-f", a, "-f", b)
    assert result.code == 1
    assert result.out == ""
    errors = result.err.split("error: ")[1:]
    assert len(errors) == 2
    assert errors[0].startswith(f'resource mapping not found for name: "x" namespace: "" from '
                                f'"{a}": no matches for kind "Foo" in version "example.com/v1"')
    assert "supported kinds: ConfigMap, Deployment, Endpoints" in errors[0]
    assert "resource name may not be empty" in errors[1]


def test_namespace_flag_must_match_the_object(cli, tmp_path):
    f = write(tmp_path, "svc.yaml", SVC.format(name="web", ns="  namespace: prod\n"))
    result = cli("apply", "-f", f, "-n", "dev")
    assert result.code == 1
    assert result.err == ('error: the namespace from the provided object "prod" does not match '
                          'the namespace "dev". You must pass \'--namespace=prod\' to perform '
                          'this operation.\n')


def test_parse_errors_stop_everything(cli, tmp_path):
    good = write(tmp_path, "good.yaml", SVC.format(name="web", ns=""))
    bad = write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: Service\n  metadata: x\n")
    result = cli("apply", "-f", good, "-f", bad)
    assert result.code == 1
    assert result.err == f"error: error parsing {bad}: line 3: mapping values are not allowed " \
                         f"in this context\n"


@pytest.mark.parametrize("argv,message", [
    (["apply"], "must specify one of -f and -k"),
    (["apply", "-k", "dir"], "kustomize directories (-k) are not supported"),
    (["apply", "-f", "x.yaml", "--prune"], "--prune is not supported"),
    (["apply", "-f", "x.yaml", "--server-side"], "server-side apply is not supported"),
    (["apply", "-f", "missing.yaml"], 'the path "missing.yaml" does not exist'),
    (["apply", "-f", "x.yaml", "-o", "wide"], "allowed formats are: json,yaml,name"),
])
def test_refusals(cli, argv, message):
    result = cli(*argv)
    assert result.code == 1
    assert message in result.err
