"""Describers for workloads: Pod, Deployment, ReplicaSet (and their pod templates)."""

from __future__ import annotations

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError

from .context import Session
from .describe_text import (Writer, annotations_multiline, describe_events,
                            labels_and_annotations, labels_multiline, name_and_namespace,
                            optional_fields, quantities, selector_text)
from .printers import age, rfc1123z


def _container_ports(ports: list, key: str) -> str:
    out = []
    for p in ports:
        text = f"{p.get(key, 0)}/{p.get('protocol', 'TCP')}"
        if p.get("name"):
            text += f" ({p['name']})"
        out.append(text)
    return ", ".join(out)


# valueFrom key references, in the order kubectl checks them, and how it names their source.
_KEY_REFS = (("secretKeyRef", "in secret"), ("configMapKeyRef", "of config map"))


def _describe_containers(w: Writer, label: str, containers: list, statuses: list | None,
                         space: str) -> None:
    w.write(0, f"{space}{label}:{'' if containers else ' <none>'}\n")
    by_name = {st.get("name"): st for st in statuses or []}
    indent = " " if space else ""
    for c in containers:
        st = by_name.get(c.get("name"))
        w.write(1, f"{indent}{c.get('name', '')}:\n")
        if st is not None:
            w.write(2, f"Container ID:\t{st.get('containerID', '')}\n")
        w.write(2, f"Image:\t{c.get('image', '')}\n")
        if st is not None:
            w.write(2, f"Image ID:\t{st.get('imageID', '')}\n")
        ports = c.get("ports") or []
        for key, title in (("containerPort", "Port"), ("hostPort", "Host Port")):
            text = _container_ports(ports, key)
            if "," in text:
                w.write(2, f"{title}s:\t{text}\n")
            else:
                w.write(2, f"{title}:\t{text or '<none>'}\n")
        for key, title in (("command", "Command"), ("args", "Args")):
            if c.get(key):
                w.write(2, f"{title}:\n")
                for item in c[key]:
                    for part in str(item).split("\n"):
                        w.write(3, f"{part}\n")
        if st is not None:
            _describe_state(w, "State", st.get("state") or {})
            last = st.get("lastState") or {}
            if last.get("terminated"):
                _describe_state(w, "Last State", last)
            w.write(2, f"Ready:\t{'True' if st.get('ready') else 'False'}\n")
            w.write(2, f"Restart Count:\t{st.get('restartCount', 0)}\n")
        resources = c.get("resources") or {}
        for key, title in (("limits", "Limits"), ("requests", "Requests")):
            if resources.get(key):
                quantities(w, 2, title, resources[key])
        env = c.get("env") or []
        w.write(2, f"Environment:{'' if env else chr(9) + '<none>'}\n")
        for e in env:
            if "valueFrom" not in e:
                for i, part in enumerate(str(e.get("value", "")).split("\n")):
                    w.write(3, f"{e.get('name')}:\t{part}\n" if i == 0 else f"\t{part}\n")
                continue
            vf = e.get("valueFrom") or {}
            key_ref = next(((source, vf[ref_key]) for ref_key, source in _KEY_REFS
                            if vf.get(ref_key)), None)
            if key_ref is not None:
                source, ref = key_ref
                w.write(3, f"{e.get('name')}:\t<set to the key '{ref.get('key')}' {source} "
                           f"'{ref.get('name')}'>\tOptional: "
                           f"{'true' if ref.get('optional') else 'false'}\n")
            elif vf.get("fieldRef"):
                ref = vf["fieldRef"]
                w.write(3, f"{e.get('name')}:\t ({ref.get('apiVersion', 'v1')}:"
                           f"{ref.get('fieldPath')})\n")
            else:
                w.write(3, f"{e.get('name')}:\t<set from valueFrom>\n")
        mounts = c.get("volumeMounts") or []
        w.write(2, f"Mounts:{'' if mounts else chr(9) + '<none>'}\n")
        for m in sorted(mounts, key=lambda m: m.get("mountPath", "")):
            flags = ["ro" if m.get("readOnly") else "rw"]
            if m.get("subPath"):
                flags.append(f'path="{m["subPath"]}"')
            w.write(3, f"{m.get('mountPath')} from {m.get('name')} ({','.join(flags)})\n")


def _describe_state(w: Writer, title: str, state: dict) -> None:
    if state.get("running"):
        w.write(2, f"{title}:\tRunning\n")
        w.write(3, f"Started:\t{rfc1123z(state['running'].get('startedAt'))}\n")
    elif state.get("terminated"):
        t = state["terminated"]
        w.write(2, f"{title}:\tTerminated\n")
        optional_fields(w, 3, t, (("reason", "Reason"), ("message", "Message")))
        w.write(3, f"Exit Code:\t{t.get('exitCode', 0)}\n")
        if t.get("signal"):
            w.write(3, f"Signal:\t{t['signal']}\n")
        w.write(3, f"Started:\t{rfc1123z(t.get('startedAt'))}\n")
        w.write(3, f"Finished:\t{rfc1123z(t.get('finishedAt'))}\n")
    else:
        w.write(2, f"{title}:\tWaiting\n")
        reason = (state.get("waiting") or {}).get("reason")
        if reason:
            w.write(3, f"Reason:\t{reason}\n")


def _text(key: str, unset: str = ""):
    """Shows `key` of a volume source, `unset` when it is missing or empty."""
    if unset:
        return lambda source: source.get(key) or unset
    return lambda source: source.get(key, "")


def _flag(key: str):
    return lambda source: "true" if source.get(key) else "false"


# The volume sources kubectl describes, in the order it checks them: the Type line, then each
# field's title and how it is shown. Any other source prints `<unknown>`.
_VOLUME_SOURCES = {
    "emptyDir": ("EmptyDir (a temporary directory that shares a pod's lifetime)",
                 (("Medium", _text("medium")), ("SizeLimit", _text("sizeLimit", "<unset>")))),
    "hostPath": ("HostPath (bare host directory volume)",
                 (("Path", _text("path")), ("HostPathType", _text("type", "<none>")))),
    "configMap": ("ConfigMap (a volume populated by a ConfigMap)",
                  (("Name", _text("name")), ("Optional", _flag("optional")))),
    "secret": ("Secret (a volume populated by a Secret)",
               (("SecretName", _text("secretName")), ("Optional", _flag("optional")))),
    "persistentVolumeClaim": ("PersistentVolumeClaim (a reference to a PersistentVolumeClaim "
                              "in the same namespace)",
                              (("ClaimName", _text("claimName")),
                               ("ReadOnly", _flag("readOnly")))),
}


def _describe_volumes(w: Writer, volumes: list, space: str) -> None:
    if not volumes:
        w.write(0, f"{space}Volumes:\t<none>\n")
        return
    w.write(0, f"{space}Volumes:\n")
    indent = " " if space else ""
    for v in volumes:
        w.write(1, f"{indent}{v.get('name')}:\n")
        key = next((k for k in _VOLUME_SOURCES if k in v), None)
        if key is None:
            w.write(1, "<unknown>\n")
            continue
        source = v.get(key) or {}
        type_text, fields = _VOLUME_SOURCES[key]
        w.write(2, f"Type:\t{type_text}\n")
        for title, show in fields:
            w.write(2, f"{title}:\t{show(source)}\n")


def _tolerations(w: Writer, title: str, tolerations: list | None) -> None:
    w.write(0, f"{title}:\t")
    if not tolerations:
        w.line("<none>")
        return
    for i, t in enumerate(sorted(tolerations, key=lambda t: t.get("key", ""))):
        if i:
            w.write(0, "\t")
        text = t.get("key", "")
        if t.get("value"):
            text += f"={t['value']}"
        if t.get("effect"):
            text += f":{t['effect']}"
        if t.get("operator") == "Exists" and not t.get("value"):
            text += " op=Exists" if (t.get("key") or t.get("effect")) else "op=Exists"
        if t.get("tolerationSeconds") is not None:
            text += f" for {t['tolerationSeconds']}s"
        w.write(0, text + "\n")


def _controlled_by(w: Writer, meta: dict) -> None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            w.write(0, f"Controlled By:\t{ref.get('kind')}/{ref.get('name')}\n")
            return


def _controlled_by_uid(obj: dict, uid) -> bool:
    """Whether `obj`'s controller owner reference names `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == uid for r in refs)


def _conditions_with_reason(w: Writer, conditions: list) -> None:
    """The Conditions table of Deployments and ReplicaSets (Type, Status, Reason)."""
    if not conditions:
        return
    w.write(0, "Conditions:\n  Type\tStatus\tReason\n")
    w.write(1, "----\t------\t------\n")
    for c in conditions:
        w.write(1, f"{c.get('type')} \t{c.get('status')}\t{c.get('reason', '')}\n")


def _qos(pod: dict) -> str:
    status = (pod.get("status") or {}).get("qosClass")
    if status:
        return status
    containers = (pod.get("spec") or {}).get("containers") or []
    requests = limits = False
    for c in containers:
        r = c.get("resources") or {}
        requests = requests or bool(r.get("requests"))
        limits = limits or bool(r.get("limits"))
    return "BestEffort" if not (requests or limits) else "Burstable"


def describe_pod(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    w = Writer()
    name_and_namespace(w, meta)
    if spec.get("priority") is not None:
        w.write(0, f"Priority:\t{spec['priority']}\n")
    optional_fields(w, 0, spec, (("priorityClassName", "Priority Class Name"),
                                 ("serviceAccountName", "Service Account")))
    if spec.get("nodeName"):
        w.write(0, f"Node:\t{spec['nodeName']}/{status.get('hostIP', '')}\n")
    else:
        w.write(0, "Node:\t<none>\n")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{rfc1123z(status['startTime'])}\n")
    labels_and_annotations(w, meta)
    phase = status.get("phase", "")
    if meta.get("deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        w.write(0, f"Status:\tTerminating (lasts {age(meta['deletionTimestamp'])})\n")
        w.write(0, f"Termination Grace Period:\t{meta.get('deletionGracePeriodSeconds', 0)}s\n")
    else:
        w.write(0, f"Status:\t{phase}\n")
    optional_fields(w, 0, status, (("reason", "Reason"), ("message", "Message")))
    w.write(0, f"IP:\t{status.get('podIP', '')}\n")
    pod_ips = status.get("podIPs") or []
    if not pod_ips:
        w.write(0, "IPs:\t<none>\n")
    else:
        w.write(0, "IPs:\n")
        for ip in pod_ips:
            w.write(1, f"IP:\t{ip.get('ip', '')}\n")
    _controlled_by(w, meta)
    if spec.get("initContainers"):
        _describe_containers(w, "Init Containers", spec["initContainers"],
                             status.get("initContainerStatuses"), "")
    _describe_containers(w, "Containers", spec.get("containers") or [],
                         status.get("containerStatuses"), "")
    conditions = status.get("conditions") or []
    if conditions:
        w.write(0, "Conditions:\n  Type\tStatus\n")
        for c in conditions:
            w.write(1, f"{c.get('type')} \t{c.get('status')} \n")
    _describe_volumes(w, spec.get("volumes") or [], "")
    w.write(0, f"QoS Class:\t{_qos(obj)}\n")
    labels_multiline(w, "Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, "Tolerations", spec.get("tolerations"))
    describe_events(w, events)
    return w.text()


def _describe_pod_template(w: Writer, template: dict | None) -> None:
    w.write(0, "Pod Template:\n")
    if template is None:
        w.write(1, "<unset>")
        return
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    labels_multiline(w, "  Labels", meta.get("labels"))
    if meta.get("annotations"):
        annotations_multiline(w, "  Annotations", meta["annotations"])
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{spec['serviceAccountName']}\n")
    if spec.get("initContainers"):
        _describe_containers(w, "Init Containers", spec["initContainers"], None, "  ")
    _describe_containers(w, "Containers", spec.get("containers") or [], None, "  ")
    _describe_volumes(w, spec.get("volumes") or [], "  ")
    if spec.get("priorityClassName"):
        w.write(1, f"Priority Class Name:\t{spec['priorityClassName']}\n")
    labels_multiline(w, "  Node-Selectors", spec.get("nodeSelector"))
    _tolerations(w, "  Tolerations", spec.get("tolerations"))


def _pod_counts(s: Session, obj: dict) -> tuple[int, int, int, int] | str:
    meta = obj.get("metadata") or {}
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    try:
        pods = s.client.list_all(lookup("pods"), meta.get("namespace"), label_selector=text)
    except ApiError as e:
        return f"error in fetching pods: {e.message}"
    counts = {"Running": 0, "Pending": 0, "Succeeded": 0, "Failed": 0}
    for pod in pods.get("items") or []:
        if not _controlled_by_uid(pod, meta.get("uid")):
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase in counts:
            counts[phase] += 1
    return counts["Running"], counts["Pending"], counts["Succeeded"], counts["Failed"]


def _percent_or_int(value, default: str) -> str:
    return default if value is None else str(value)


def describe_deployment(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    w = Writer()
    name_and_namespace(w, meta)
    w.write(0, f"CreationTimestamp:\t{rfc1123z(meta.get('creationTimestamp'))}\n")
    labels_and_annotations(w, meta)
    w.write(0, f"Selector:\t{selector_text(spec.get('selector'))}\n")
    w.write(0, f"Replicas:\t{spec.get('replicas', 1)} desired | "
               f"{status.get('updatedReplicas', 0)} updated | {status.get('replicas', 0)} total "
               f"| {status.get('availableReplicas', 0)} available | "
               f"{status.get('unavailableReplicas', 0)} unavailable\n")
    strategy = spec.get("strategy") or {}
    w.write(0, f"StrategyType:\t{strategy.get('type', '')}\n")
    w.write(0, f"MinReadySeconds:\t{spec.get('minReadySeconds', 0)}\n")
    ru = strategy.get("rollingUpdate")
    if ru is not None:
        w.write(0, f"RollingUpdateStrategy:\t{_percent_or_int(ru.get('maxUnavailable'), '25%')} "
                   f"max unavailable, {_percent_or_int(ru.get('maxSurge'), '25%')} max surge\n")
    _describe_pod_template(w, spec.get("template"))
    _conditions_with_reason(w, status.get("conditions") or [])
    old, new = _replica_sets(s, obj)
    if old is not None:
        w.write(0, f"OldReplicaSets:\t{old}\n")
        w.write(0, f"NewReplicaSet:\t{new}\n")
    describe_events(w, events)
    return w.text()


def _replica_sets(s: Session, deploy: dict) -> tuple[str | None, str | None]:
    meta = deploy.get("metadata") or {}
    try:
        listed = s.client.list_all(lookup("replicasets"), meta.get("namespace"))
    except ApiError:
        return None, None
    owned = [rs for rs in listed.get("items") or [] if _controlled_by_uid(rs, meta.get("uid"))]
    if not owned:
        return None, None
    template = ((deploy.get("spec") or {}).get("template") or {})
    revision = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
    new_sets, old_sets = [], []
    for rs in owned:
        rs_meta = rs.get("metadata") or {}
        rs_rev = (rs_meta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
        rs_template = dict((rs.get("spec") or {}).get("template") or {})
        rs_labels = dict((rs_template.get("metadata") or {}).get("labels") or {})
        rs_labels.pop("pod-template-hash", None)
        same = rs_labels == ((template.get("metadata") or {}).get("labels") or {}) and \
            (rs_template.get("spec") == template.get("spec"))
        if (revision and rs_rev == revision) or (not revision and same):
            new_sets.append(rs)
        else:
            old_sets.append(rs)

    def show(sets: list) -> str:
        parts = [f"{(r.get('metadata') or {}).get('name')} ({(r.get('status') or {}).get('replicas', 0)}"
                 f"/{(r.get('spec') or {}).get('replicas', 0)} replicas created)" for r in sets]
        return ", ".join(parts) if parts else "<none>"
    return show(old_sets), show(new_sets)


def describe_replicaset(s: Session, obj: dict, events) -> str:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    w = Writer()
    name_and_namespace(w, meta)
    w.write(0, f"Selector:\t{selector_text(spec.get('selector'))}\n")
    labels_and_annotations(w, meta)
    _controlled_by(w, meta)
    w.write(0, f"Replicas:\t{status.get('replicas', 0)} current / {spec.get('replicas', 1)} "
               f"desired\n")
    counts = _pod_counts(s, obj)
    if isinstance(counts, str):
        w.write(0, f"Pods Status:\t{counts}\n")
    else:
        w.write(0, "Pods Status:\t%d Running / %d Waiting / %d Succeeded / %d Failed\n" % counts)
    _describe_pod_template(w, spec.get("template"))
    _conditions_with_reason(w, status.get("conditions") or [])
    describe_events(w, events)
    return w.text()
