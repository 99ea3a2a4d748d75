"""What the workload controllers (ReplicaSet, Deployment, StatefulSet, scheduler, node
lifecycle, garbage collector) share about pods and owner references.

Everything here is pure: reading conditions and timestamps, building owner references and
pods from templates, ranking pods for deletion. The one asynchronous helper,
`wait_gone`, lets a controller that just deleted objects wait until its own cache has seen the
deletes, so that its next reconcile does not count them again (the role of client-go's
"expectations" for deletes; creates use `Informer.wait_for(rv)` directly).
"""

from __future__ import annotations

import asyncio
import calendar
import copy
import time

from meshnet.api.labels import SelectorError, selector_from_label_selector

# How long a controller waits for its cache to reflect its own writes before giving up and
# retrying the key later (the cache is a watch on the same store: milliseconds normally).
CACHE_CATCH_UP_S = 5.0


# -- time -------------------------------------------------------------------------------------


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (`2024-01-01T00:00:00Z`, optionally with fractional seconds) -> epoch seconds."""
    if not text or not isinstance(text, str):
        return None
    main = text.rstrip("Z")
    frac = 0.0
    if "." in main:
        main, _, digits = main.partition(".")
        digits = "".join(ch for ch in digits if ch.isdigit())
        frac = float(f"0.{digits}") if digits else 0.0
    if len(main) > 19 and main[19] in "+-":  # an explicit offset; controllers write Z only
        main = main[:19]
    try:
        return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + frac
    except ValueError:
        return None


def rfc3339(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


# -- pod state --------------------------------------------------------------------------------


def condition(obj: dict, type_: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            return cond
    return None


def pod_ready(pod: dict) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def pod_running_and_ready(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and pod_ready(pod)


def pod_available(pod: dict, min_ready_s: int, now: float) -> bool:
    """Ready for at least min_ready_s (kube's podutil.IsPodAvailable)."""
    if not pod_ready(pod):
        return False
    if min_ready_s <= 0:
        return True
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and since + min_ready_s <= now


def available_in(pod: dict, min_ready_s: int, now: float) -> float | None:
    """Seconds until a ready pod becomes available; None if not ready or already available."""
    if min_ready_s <= 0 or not pod_ready(pod):
        return None
    since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime"))
    if since is None:
        return None
    left = since + min_ready_s - now
    return left if left > 0 else None


def terminating(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def pod_active(pod: dict) -> bool:
    """Counts toward a controller's replicas: not finished, not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not terminating(pod)


def labels_of(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


def workload_selector(obj: dict):
    """The Selector of a workload's spec.selector; NOTHING-like (matches nothing) when bad."""
    try:
        return selector_from_label_selector((obj.get("spec") or {}).get("selector"))
    except SelectorError:
        return selector_from_label_selector(None)


# -- owner references -------------------------------------------------------------------------


def enqueue_pod_owners(queue_key, enqueue, owners, kind: str, old: dict | None,
                       new: dict | None) -> None:
    """On a pod change, queue the workload of `kind` that controls it, or for an orphan every
    workload of that kind whose selector would adopt it (kube's getPodReplicaSets)."""
    for pod in (old, new):
        if pod is None:
            continue
        ref = controller_ref(pod)
        ns = pod["metadata"].get("namespace")
        if ref is not None:
            if ref.get("kind") == kind:
                queue_key(f"{ns}/{ref.get('name')}")
            continue
        for owner in owners.list(ns):
            if workload_selector(owner).matches(labels_of(pod)):
                enqueue(owner)


def owner_reference(owner: dict) -> dict:
    """A controller owner reference to owner (kube's metav1.NewControllerRef)."""
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def controller_ref(obj: dict) -> dict | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == owner["metadata"].get("uid")


def with_owner(obj: dict, owner: dict) -> dict:
    """obj (a copy we may change) adopted by owner."""
    refs = [r for r in obj["metadata"].get("ownerReferences") or ()
            if r.get("uid") != owner["metadata"]["uid"]]
    obj["metadata"]["ownerReferences"] = refs + [owner_reference(owner)]
    return obj


def without_owner(obj: dict, owner_uid: str) -> dict:
    """obj (a copy we may change) released by the owner with owner_uid."""
    refs = [r for r in obj["metadata"].get("ownerReferences") or () if r.get("uid") != owner_uid]
    if refs:
        obj["metadata"]["ownerReferences"] = refs
    else:
        obj["metadata"].pop("ownerReferences", None)
    return obj


def pod_from_template(template: dict, owner: dict, *, name: str | None = None,
                      generate_name: str | None = None, extra_labels: dict | None = None) -> dict:
    """A Pod for owner from its pod template (kube's controller.GetPodFromTemplate)."""
    tmeta = template.get("metadata") or {}
    meta: dict = {"namespace": owner["metadata"]["namespace"],
                  "labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
                  "ownerReferences": [owner_reference(owner)]}
    if tmeta.get("annotations"):
        meta["annotations"] = dict(tmeta["annotations"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{owner['metadata']['name']}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {})}


# -- choosing pods to delete ------------------------------------------------------------------

_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: dict) -> tuple:
    """Sort key: pods that sort first are deleted first (kube's ActivePods ordering):
    unscheduled before scheduled, Pending before Unknown before Running, not ready before
    ready, recently ready before long ready, newer before older."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    ready = pod_ready(pod)
    ready_since = parse_time((condition(pod, "Ready") or {}).get("lastTransitionTime")) or 0.0
    created = parse_time(meta.get("creationTimestamp")) or 0.0
    return (1 if spec.get("nodeName") else 0,
            _PHASE_RANK.get((pod.get("status") or {}).get("phase") or "Pending", 0),
            1 if ready else 0,
            -ready_since if ready else 0.0,
            -created,
            meta.get("name", ""))


def pods_to_delete(pods: list[dict], count: int) -> list[dict]:
    """The `count` pods to remove when scaling down."""
    if count <= 0:
        return []
    return sorted(pods, key=deletion_rank)[:count]


# -- waiting for the cache --------------------------------------------------------------------


async def wait_gone(informer, keys, timeout_s: float = CACHE_CATCH_UP_S) -> bool:
    """Until none of keys is in informer's cache; False on timeout. Each pass waits for the
    next event of the informer's kind (a delete is one), so this never polls."""
    keys = list(keys)
    try:
        async with asyncio.timeout(timeout_s):
            while any(informer.get(k) is not None for k in keys):
                try:
                    nxt = int(informer.resource_version or 0) + 1
                except ValueError:
                    nxt = 1
                await informer.wait_for(nxt)
    except TimeoutError:
        return False
    return True


async def wait_seen(informer, resource_version: str, timeout_s: float = CACHE_CATCH_UP_S) -> bool:
    """Until informer has seen resource_version (a write of its own kind); False on timeout."""
    try:
        await asyncio.wait_for(informer.wait_for(resource_version), timeout_s)
    except TimeoutError:
        return False
    return True
