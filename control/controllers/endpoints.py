"""The endpoints controller: one Endpoints object per Service with a selector.

Theory of operation
-------------------
`compute_endpoints(service, pods)` is the whole decision and is pure: which pods back the
Service, on which ports, and whether they are ready. It follows kube's endpoints controller:

- a pod counts if it has a podIP, is not Succeeded/Failed, and is not terminating — unless the
  Service sets `publishNotReadyAddresses`, which also keeps terminating pods (StatefulSet peer
  discovery relies on it, and so does kube);
- a pod whose Ready condition is True goes into `addresses`, others into `notReadyAddresses`
  (all into `addresses` with `publishNotReadyAddresses`);
- each Service port resolves per pod: a number is used as is, a name is looked up among the
  pod's container ports with the same protocol; a pod without that named port is left out of
  that Service port only. Addresses are then grouped into subsets by identical port sets
  (kube's RepackSubsets), so a pod that serves fewer ports lands in a subset of its own;
- a headless Service without ports gets its pods' addresses with no ports.

The controller reconciles a Service key from its caches: absent Service -> delete its Endpoints
if this controller wrote them (they carry `MANAGED_BY_LABEL`); no selector -> never touch the
Endpoints (the user writes them, as for the `kubernetes` Service); otherwise write the computed
Endpoints if — and only if — they differ in canonical form (sorted; pods' resourceVersions
ignored, so that a pod status heartbeat does not rewrite every Endpoints it is in).
Pod events enqueue only the Services whose selector matches the pod's old or new labels, and
only when something endpoints depend on changed.
"""

from __future__ import annotations

import ipaddress
import logging

from meshnet.api import errors
from meshnet.api.labels import selector_from_map
from meshnet.api.resources import lookup
from meshnet.control.controllers.base import Controller, Requeue, object_key, split_key
from meshnet.control.controllers.events import record_event

log = logging.getLogger("meshnet.controllers.endpoints")

SERVICES = lookup("services")
PODS = lookup("pods")
ENDPOINTS = lookup("endpoints")
MANAGED_BY_LABEL = "endpoints.meshnet.io/managed-by"
MANAGED_BY = "endpoints-controller"
# kube's endpoints controller marks Endpoints of headless Services with this label.
HEADLESS_LABEL = "service.kubernetes.io/headless"
COMPONENT = "endpoint-controller"


# -- the pure part ------------------------------------------------------------------------------


def pod_ready(pod: dict) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_terminating(pod: dict) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """kube's ShouldPodBeInEndpoints."""
    status = pod.get("status") or {}
    if not status.get("podIP"):
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return include_terminating or not pod_terminating(pod)


def resolve_target_port(pod: dict, service_port: dict) -> int | None:
    """The pod port a Service port sends to (kube's podutil.FindPort); None if the pod lacks a
    named port."""
    target = service_port.get("targetPort")
    if target in (None, "", 0):
        return service_port.get("port")
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def endpoint_address(service: dict, pod: dict) -> dict:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    addr: dict = {"ip": pod["status"]["podIP"]}
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        addr["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    ref = {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta.get("name", "")}
    if meta.get("uid"):
        ref["uid"] = meta["uid"]
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    addr["targetRef"] = ref
    return addr


def _endpoint_port(service_port: dict, number: int) -> dict:
    port: dict = {}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    port["port"] = number
    port["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_sort_key(port: dict) -> tuple:
    return (port.get("name", ""), port["port"], port["protocol"], port.get("appProtocol", ""))


def _address_sort_key(addr: dict) -> tuple:
    try:
        ip = ipaddress.ip_address(addr["ip"])
        ip_key = (ip.version, int(ip))
    except ValueError:
        ip_key = (0, 0)
    return ip_key, addr["ip"], (addr.get("targetRef") or {}).get("uid", "")


def compute_endpoints(service: dict, pods: list[dict]) -> list[dict]:
    """The `subsets` of the Service's Endpoints, in canonical order, from the pods its selector
    matched (the caller selects; this function filters by state). See the module doc."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    headless_portless = not service_ports and spec.get("clusterIP") == "None"
    # port set -> (ready addresses, not-ready addresses)
    groups: dict[tuple, tuple[list[dict], list[dict]]] = {}
    for pod in pods:
        if not pod_in_endpoints(pod, include_terminating=publish_not_ready):
            continue
        ports = []
        for sp in service_ports:
            number = resolve_target_port(pod, sp)
            if number is not None:
                ports.append(_endpoint_port(sp, number))
        if not ports and not headless_portless:
            continue
        ports.sort(key=_port_sort_key)
        group_key = tuple(tuple(sorted(p.items())) for p in ports)
        ready, not_ready = groups.setdefault(group_key, ([], []))
        (ready if publish_not_ready or pod_ready(pod) else not_ready).append(
            endpoint_address(service, pod))
    subsets = []
    for group_key in sorted(groups):
        ready, not_ready = groups[group_key]
        subset: dict = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_address_sort_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_sort_key)
        if group_key:
            subset["ports"] = [dict(p) for p in group_key]
        subsets.append(subset)
    return subsets


def unresolved_named_ports(service: dict, pods: list[dict]) -> list[str]:
    """Named targetPorts that no candidate pod has (worth an Event: the port gets no
    endpoints). Empty when there are no candidate pods at all."""
    spec = service.get("spec") or {}
    candidates = [p for p in pods if pod_in_endpoints(p, bool(spec.get("publishNotReadyAddresses")))]
    if not candidates:
        return []
    missing = []
    for sp in spec.get("ports") or ():
        target = sp.get("targetPort")
        if isinstance(target, str) and not target.isdigit() and target and \
                all(resolve_target_port(p, sp) is None for p in candidates):
            missing.append(target)
    return missing


def canonical_subsets(subsets: list[dict] | None) -> list:
    """A comparable form: sorted, pods' resourceVersions dropped."""
    out = []
    for subset in subsets or ():
        entry = []
        for field in ("addresses", "notReadyAddresses"):
            addrs = []
            for a in subset.get(field) or ():
                ref = {k: v for k, v in (a.get("targetRef") or {}).items()
                       if k != "resourceVersion"}
                addrs.append((a.get("ip"), a.get("hostname"), a.get("nodeName"),
                              tuple(sorted(ref.items()))))
            entry.append(tuple(sorted(addrs, key=repr)))
        entry.append(tuple(sorted((tuple(sorted(p.items())) for p in subset.get("ports") or ()),
                                  key=repr)))
        out.append(tuple(entry))
    return sorted(out, key=repr)


def endpoints_view(pod: dict) -> tuple:
    """What of a pod endpoints depend on (a change elsewhere enqueues nothing)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ports = tuple((p.get("name"), p.get("containerPort"), p.get("protocol"))
                  for c in spec.get("containers") or () for p in c.get("ports") or ())
    return (status.get("podIP"), status.get("phase"), pod_ready(pod), pod_terminating(pod),
            spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"),
            tuple(sorted((meta.get("labels") or {}).items())), ports)


def desired_labels(service: dict) -> dict:
    labels = dict((service.get("metadata") or {}).get("labels") or {})
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    return labels


def is_managed(endpoints: dict) -> bool:
    labels = (endpoints.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY


def selects_pods(service: dict) -> bool:
    spec = service.get("spec") or {}
    return bool(spec.get("selector")) and (spec.get("type") or "ClusterIP") != "ExternalName"


# -- the controller ----------------------------------------------------------------------------


class EndpointsController(Controller):
    name = "endpoints"
    workers = 4

    def __init__(self, registry):
        super().__init__(registry)
        self.services = self.informer(SERVICES)
        self.pods = self.informer(PODS)
        self.endpoints = self.informer(ENDPOINTS)
        self.services.add_handlers(on_add=self.enqueue, on_delete=self.enqueue,
                                   on_update=lambda old, new: self.enqueue(new))
        self.pods.add_handlers(on_add=lambda pod: self._pod_changed(None, pod),
                               on_update=self._pod_changed,
                               on_delete=lambda pod: self._pod_changed(pod, None))
        self.endpoints.add_handlers(on_add=self._endpoints_changed,
                                    on_update=lambda old, new: self._endpoints_changed(new),
                                    on_delete=self._endpoints_changed)

    def _pod_changed(self, old: dict | None, new: dict | None) -> None:
        if old is not None and new is not None and endpoints_view(old) == endpoints_view(new):
            return
        pod = new or old
        ns = (pod.get("metadata") or {}).get("namespace")
        label_sets = [(p.get("metadata") or {}).get("labels") or {} for p in (old, new) if p]
        for svc in self.services.list(ns):
            if not selects_pods(svc):
                continue
            selector = selector_from_map(svc["spec"]["selector"])
            if any(selector.matches(labels) for labels in label_sets):
                self.enqueue(svc)

    def _endpoints_changed(self, ep: dict) -> None:
        # Someone else wrote or deleted Endpoints we own: put ours back. Our own writes come
        # here too and end in a no-op compare.
        key = object_key(ep)
        svc = self.services.get(key)
        if (svc is not None and selects_pods(svc)) or (svc is None and is_managed(ep)):
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None:
            if current is not None and is_managed(current):
                try:
                    await self.registry.delete(ENDPOINTS, ns, name)
                except errors.StatusError as exc:
                    if exc.code != 404:
                        raise
            return
        if not selects_pods(svc):
            return  # user-managed Endpoints (or none): never touched
        selector = selector_from_map(svc["spec"]["selector"])
        pods = [p for p in self.pods.list(ns)
                if selector.matches((p.get("metadata") or {}).get("labels") or {})]
        subsets = compute_endpoints(svc, pods)
        labels = desired_labels(svc)
        if current is None or \
                canonical_subsets(current.get("subsets")) != canonical_subsets(subsets) or \
                ((current.get("metadata") or {}).get("labels") or {}) != labels:
            await self._write(ns, name, current, labels, subsets)
        # Reconciles run only when the Service or an endpoint-relevant part of a selected pod
        # changed, so a repeated Event (its count bumps) says "still broken", not spam.
        missing = unresolved_named_ports(svc, pods)
        if missing:
            await record_event(self.registry, svc, "Warning", "FailedToResolveNamedPort",
                               f"no selected pod has a container port named "
                               f"{', '.join(repr(m) for m in missing)}; those Service ports have "
                               f"no endpoints", COMPONENT)

    async def _write(self, ns: str, name: str, current: dict | None, labels: dict,
                     subsets: list[dict]) -> None:
        if current is None:
            obj = {"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": name, "namespace": ns, "labels": labels}}
            if subsets:
                obj["subsets"] = subsets
            try:
                await self.registry.create(ENDPOINTS, ns, obj)
            except errors.StatusError as exc:
                if exc.reason == "AlreadyExists":
                    raise Requeue("Endpoints appeared meanwhile; cache is behind") from None
                if exc.code in (403, 404):
                    return  # the namespace is going away; nothing to keep up to date
                raise
            return
        obj = {k: v for k, v in current.items() if k != "subsets"}
        obj["metadata"] = {**current["metadata"], "labels": labels}
        if subsets:
            obj["subsets"] = subsets
        try:
            await self.registry.update(ENDPOINTS, ns, name, obj)
        except errors.StatusError as exc:
            if exc.code in (404, 409):
                raise Requeue(f"Endpoints write: {exc.message}") from None
            raise
