"""`meshctl scale` and `meshctl rollout`: kubectl's status wording, history and undo targets
table-first, then end to end with the installed meshctl against a real meshnet-apiserver (the
shared `apiserver` fixture) running its controllers. No node agent runs here: a stand-in
kubelet thread marks the pods of `app=web` Running/Ready through the status subresource with
the official kubernetes client, as an agent would."""

from __future__ import annotations

import threading

import pytest

from meshnet.cli.errors import CLIError
from meshnet.cli.rollout import history_rows, rollout_status_message, undo_target



def deploy(generation=2, observed=2, replicas=3, updated=3, total=3, available=3, reason=None):
    status = {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
              "availableReplicas": available}
    if reason:
        status["conditions"] = [{"type": "Progressing", "status": "False", "reason": reason}]
    return {"metadata": {"name": "x", "generation": generation, "uid": "u"},
            "spec": {"replicas": replicas}, "status": status}


STATUS_CASES = [
    ("spec not observed yet", deploy(observed=1),
     ("Waiting for deployment spec update to be observed...", False)),
    ("new replicas being created", deploy(updated=1),
     ('Waiting for deployment "x" rollout to finish: 1 out of 3 new replicas have been '
      'updated...', False)),
    ("old replicas still there", deploy(total=4),
     ('Waiting for deployment "x" rollout to finish: 1 old replicas are pending '
      'termination...', False)),
    ("updated but not available", deploy(available=1),
     ('Waiting for deployment "x" rollout to finish: 1 of 3 updated replicas are '
      'available...', False)),
    ("done", deploy(), ('deployment "x" successfully rolled out', True)),
]


@pytest.mark.parametrize("desc,d,expected", STATUS_CASES, ids=[c[0] for c in STATUS_CASES])
def test_rollout_status_message(desc, d, expected):
    assert rollout_status_message(d) == expected


def test_rollout_status_past_the_deadline_is_an_error():
    with pytest.raises(CLIError, match='deployment "x" exceeded its progress deadline'):
        rollout_status_message(deploy(updated=1, reason="ProgressDeadlineExceeded"))


def rs(name, revision, owner="u", cause=None):
    annotations = {"deployment.kubernetes.io/revision": str(revision)}
    if cause:
        annotations["kubernetes.io/change-cause"] = cause
    return {"metadata": {"name": name, "annotations": annotations,
                         "ownerReferences": [{"uid": owner, "controller": True}]},
            "spec": {"template": {"metadata": {"labels": {"pod-template-hash": name}}}}}


def test_history_rows_are_sorted_and_only_the_deployments_own():
    rows = history_rows(deploy(), [rs("c", 3, cause="image 3"), rs("a", 1), rs("z", 2, "other")])
    assert rows == [["REVISION", "CHANGE-CAUSE"], ["1", "<none>"], ["3", "image 3"]]


UNDO_CASES = [
    ("default: the revision before the current one", [rs("a", 1), rs("b", 2), rs("c", 3)], 0,
     "b"),
    ("a named revision", [rs("a", 1), rs("b", 2), rs("c", 3)], 1, "a"),
]


@pytest.mark.parametrize("desc,rss,to,expected", UNDO_CASES, ids=[c[0] for c in UNDO_CASES])
def test_undo_target(desc, rss, to, expected):
    assert undo_target(deploy(), rss, to)["metadata"]["name"] == expected


UNDO_ERRORS = [
    ("unknown revision", [rs("a", 1), rs("b", 2)], 7,
     "unable to find specified revision 7 in history"),
    ("nothing to go back to", [rs("a", 1)], 0, 'no rollout history found for deployment "x"'),
]


@pytest.mark.parametrize("desc,rss,to,message", UNDO_ERRORS, ids=[c[0] for c in UNDO_ERRORS])
def test_undo_target_errors(desc, rss, to, message):
    with pytest.raises(CLIError) as e:
        undo_target(deploy(), rss, to)
    assert e.value.message == message


# -- end to end ---------------------------------------------------------------------------------


class Kubelet(threading.Thread):
    """Marks every pod labelled app=web Running and Ready as soon as it appears."""

    def __init__(self, api_client):
        super().__init__(daemon=True)
        from kubernetes import client
        self.v1 = client.CoreV1Api(api_client)
        self.stopping = threading.Event()

    def run(self):
        from kubernetes import watch
        while not self.stopping.is_set():
            w = watch.Watch()
            for ev in w.stream(self.v1.list_namespaced_pod, "default", label_selector="app=web",
                               timeout_seconds=1):
                if self.stopping.is_set():
                    break
                pod = ev["object"]
                if ev["type"] == "DELETED":
                    continue
                ready = any(c.type == "Ready" and c.status == "True"
                            for c in (pod.status.conditions or ()))
                if not ready:
                    self.mark(pod.metadata.name)
            w.stop()

    def mark(self, name):
        from kubernetes.client.rest import ApiException
        body = {"status": {"phase": "Running", "podIP": "10.244.0.9",
                           "conditions": [{"type": "Ready", "status": "True"}]}}
        try:
            self.v1.patch_namespaced_pod_status(name, "default", body)
        except ApiException:
            pass  # deleted meanwhile


@pytest.fixture(scope="module")
def kubelet(k8s):
    thread = Kubelet(k8s)
    thread.start()
    yield thread
    thread.stopping.set()
    thread.join(10)


def ok(result, out=None):
    assert result.code == 0, result
    if out is not None:
        assert result.out == out, result
    return result


def rollout_status(meshctl, name="web", timeout="60s"):
    result = meshctl("rollout", "status", f"deployment/{name}", f"--timeout={timeout}",
                     timeout=90)
    return result


def check_status_output(result, name="web"):
    ok(result)
    lines = result.out.splitlines()
    assert lines[-1] == f'deployment "{name}" successfully rolled out', result
    for line in lines[:-1]:
        assert line.startswith((f'Waiting for deployment "{name}" rollout to finish: ',
                                "Waiting for deployment spec update")), result


def set_image(k8s, image, name="web"):
    from kubernetes import client
    apps = client.AppsV1Api(k8s)
    apps.patch_namespaced_deployment(name, "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "nginx", "image": image}]}}}})


def image_of(k8s, name="web"):
    from kubernetes import client
    d = client.AppsV1Api(k8s).read_namespaced_deployment(name, "default")
    return d.spec.template.spec.containers[0].image


def test_scale_rollout_status_history_and_undo(meshctl, k8s, kubelet):
    ok(meshctl("create", "deployment", "web", "--image=nginx:1", "--replicas=3"),
       "deployment.apps/web created\n")
    check_status_output(rollout_status(meshctl))

    ok(meshctl("scale", "deployment", "web", "--replicas=2"), "deployment.apps/web scaled\n")
    check_status_output(rollout_status(meshctl))
    pods = ok(meshctl("get", "pods", "-l", "app=web", "-o", "name")).out.split()
    assert len(pods) == 2

    set_image(k8s, "nginx:2")
    check_status_output(rollout_status(meshctl))
    history = ok(meshctl("rollout", "history", "deployment/web")).out
    assert history.splitlines()[0] == "deployment.apps/web "
    assert [ln.split()[0] for ln in history.splitlines()[1:] if ln.strip()] == \
        ["REVISION", "1", "2"]

    ok(meshctl("rollout", "undo", "deployment/web"), "deployment.apps/web rolled back\n")
    check_status_output(rollout_status(meshctl))
    assert image_of(k8s) == "nginx:1"
    history = ok(meshctl("rollout", "history", "deployment", "web")).out
    assert [ln.split()[0] for ln in history.splitlines()[1:] if ln.strip()] == \
        ["REVISION", "2", "3"]

    ok(meshctl("rollout", "undo", "deployment/web", "--to-revision=2"),
       "deployment.apps/web rolled back\n")
    check_status_output(rollout_status(meshctl))
    assert image_of(k8s) == "nginx:2"
    result = meshctl("rollout", "undo", "deployment/web", "--to-revision=9")
    assert (result.code, result.err) == \
        (1, "error: unable to find specified revision 9 in history\n")


def test_rollout_status_times_out_when_pods_never_become_ready(meshctl):
    ok(meshctl("create", "deployment", "stuck", "--image=nginx:1"))  # app=stuck: never ready
    result = rollout_status(meshctl, "stuck", timeout="2s")
    assert result.code == 1, result
    assert result.err == "error: timed out waiting for the condition\n"
    assert result.out.startswith('Waiting for deployment "stuck" rollout to finish: ')


def test_scale_statefulset_and_replicaset_and_errors(meshctl, k8s):
    from kubernetes import client
    apps = client.AppsV1Api(k8s)
    template = {"metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "db:1"}]}}
    apps.create_namespaced_stateful_set("default", {
        "metadata": {"name": "db"}, "spec": {"replicas": 1, "serviceName": "db",
                                             "selector": {"matchLabels": {"app": "db"}},
                                             "template": template}})
    apps.create_namespaced_replica_set("default", {
        "metadata": {"name": "cache"}, "spec": {"replicas": 1,
                                                "selector": {"matchLabels": {"app": "cache"}},
                                                "template": {**template, "metadata": {
                                                    "labels": {"app": "cache"}}}}})
    ok(meshctl("scale", "statefulset/db", "--replicas=3"), "statefulset.apps/db scaled\n")
    ok(meshctl("scale", "rs", "cache", "--replicas=0"), "replicaset.apps/cache scaled\n")
    assert apps.read_namespaced_stateful_set("db", "default").spec.replicas == 3
    assert apps.read_namespaced_replica_set("cache", "default").spec.replicas == 0

    result = meshctl("scale", "svc", "kubernetes", "--replicas=1")
    assert result.code == 1 and "only deployments, replicasets and statefulsets" in result.err
    result = meshctl("scale", "deployment", "nope", "--replicas=1")
    assert (result.code, result.err) == \
        (1, 'Error from server (NotFound): deployments.apps "nope" not found\n')
    result = meshctl("scale", "deployment", "web")
    assert result.code == 1 and 'required flag(s) "replicas" not set' in result.err
