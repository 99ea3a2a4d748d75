"""OpenAPI documents: `/openapi/v3` (root and one document per group-version) and `/openapi/v2`.

Theory of operation
-------------------
kubectl (1.27+) reads OpenAPI v3 for three things, and this module is shaped by them:

1. Field validation. Before `apply`/`create`/`replace` it looks, in the group-version's
   document, for a PATCH operation whose `x-kubernetes-group-version-kind` (a single object on
   the *operation*) is the object's GVK, and checks that operation lists a `fieldValidation`
   query parameter. Found: validation is left to the server (`?fieldValidation=Strict` on the
   request). Missing: it falls back to client-side validation through OpenAPI v2, and if that
   fails too the command fails. So every PATCH operation here carries `fieldValidation`, and
   every kind served has one (kubectl stops at the first PATCH with a matching GVK, in map
   order, so subresource PATCHes carry it too).
2. Client-side `kubectl apply` patches. kubectl uses the v3 schemas to compute a strategic
   merge patch only when the PATCH operation accepts `application/strategic-merge-patch+json`.
   Our schemas are permissive (no `x-kubernetes-patch-merge-key`), which would turn every list
   into "replace whole list". So that content type is deliberately *not* advertised: kubectl
   then tries v2 (below) and finally its compiled-in Go types, which carry the real merge keys
   for every built-in kind. The server does accept strategic merge patches.
3. `kubectl explain`: finds the schema whose `x-kubernetes-group-version-kind` (a *list* on
   schemas) matches, and follows `$ref`s from it.

Schemas are permissive: each kind has apiVersion, kind, metadata (a real ObjectMeta schema) and
its top-level fields (`spec`/`status`, or `data`, `subsets`, ... for kinds without a spec),
with `x-kubernetes-preserve-unknown-fields` below that. The server is the validator.

OpenAPI v2: client-go fetches `/openapi/v2` with `Accept:
application/com.github.proto-openapi.spec.v2@v1.0+protobuf` only, and parses protobuf.
`openapi_v2_protobuf()` is a minimal valid document (no definitions): kubectl's v2 users then
find no schema and skip client-side validation (as for a `kind: List` manifest) or use their
built-in types. `openapi_v2()` is the JSON swagger 2.0 form for other clients;
`openapi_v2_for(accept)` picks between the two as kube-apiserver does.

Documents are built once and cached; the returned dicts are shared and must not be mutated.
Each document's hash (sha256 of its canonical JSON) goes into the root's `serverRelativeURL`,
which kubectl uses as a cache key.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

from meshnet.api.resources import ResourceInfo, in_group_version
from meshnet.control.apiserver.discovery import GIT_VERSION, group_versions

# client-go asks for v2 with this Accept value; kube-apiserver answers with the dotted form
# below, because `@` is not a MIME token character and Go's mime.ParseMediaType (in kubectl)
# rejects it: "mime: unexpected content after media subtype".
OPENAPI_V2_PROTOBUF_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
OPENAPI_V2_PROTOBUF_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
SCALE_SCHEMA = "io.k8s.api.autoscaling.v1.Scale"
SCALE_GVK = ("autoscaling", "v1", "Scale")

# Content types of the PATCH request body. Strategic merge is left out on purpose (see above).
PATCH_CONTENT_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
                       "application/merge-patch+json")

# ---------------------------------------------------------------------------------------------
# Query parameters: (type, description). Descriptions are kube-apiserver's, shortened.

_PARAMS: dict[str, tuple[str, str]] = {
    "pretty": ("string", "If 'true', then the output is pretty printed."),
    "allowWatchBookmarks": ("boolean", "allowWatchBookmarks requests watch events with type "
                            "\"BOOKMARK\". Servers that do not implement bookmarks may ignore "
                            "this flag."),
    "continue": ("string", "The continue option should be set when retrieving more results "
                 "from the server."),
    "fieldSelector": ("string", "A selector to restrict the list of returned objects by their "
                      "fields. Defaults to everything."),
    "labelSelector": ("string", "A selector to restrict the list of returned objects by their "
                      "labels. Defaults to everything."),
    "limit": ("integer", "limit is a maximum number of responses to return for a list call."),
    "resourceVersion": ("string", "resourceVersion sets a constraint on what resource versions "
                        "a request may be served from."),
    "resourceVersionMatch": ("string", "resourceVersionMatch determines how resourceVersion is "
                             "applied to list calls."),
    "sendInitialEvents": ("boolean", "`sendInitialEvents=true` may be set together with "
                          "`watch=true`."),
    "timeoutSeconds": ("integer", "Timeout for the list/watch call."),
    "watch": ("boolean", "Watch for changes to the described resources and return them as a "
              "stream of add, update, and remove notifications."),
    "dryRun": ("string", "When present, indicates that modifications should not be persisted. "
               "Valid values are: - All: all dry run stages will be processed"),
    "fieldManager": ("string", "fieldManager is a name associated with the actor or entity "
                     "that is making these changes."),
    "fieldValidation": ("string", "fieldValidation instructs the server on how to handle "
                        "objects in the request (POST/PUT/PATCH) containing unknown or "
                        "duplicate fields. Valid values are: - Ignore - Warn - Strict"),
    "force": ("boolean", "Force is going to \"force\" Apply requests. It means user will "
              "re-acquire conflicting fields owned by other people."),
    "gracePeriodSeconds": ("integer", "The duration in seconds before the object should be "
                           "deleted."),
    "orphanDependents": ("boolean", "Deprecated: please use the PropagationPolicy."),
    "propagationPolicy": ("string", "Whether and how garbage collection will be performed. "
                          "Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    "container": ("string", "The container for which to stream logs / run the command."),
    "follow": ("boolean", "Follow the log stream of the pod."),
    "insecureSkipTLSVerifyBackend": ("boolean", "insecureSkipTLSVerifyBackend indicates that "
                                     "the apiserver should not confirm the validity of the "
                                     "serving certificate of the backend it is connecting to."),
    "limitBytes": ("integer", "If set, the number of bytes to read from the server before "
                   "terminating the log output."),
    "previous": ("boolean", "Return previous terminated container logs."),
    "sinceSeconds": ("integer", "A relative time in seconds before the current time from which "
                     "to show logs."),
    "tailLines": ("integer", "If set, the number of lines from the end of the logs to show."),
    "timestamps": ("boolean", "If true, add an RFC3339 timestamp at the beginning of every "
                   "line of log output."),
    "command": ("string", "Command is the remote command to execute. argv array."),
    "stderr": ("boolean", "Redirect the standard error stream of the pod for this call."),
    "stdin": ("boolean", "Redirect the standard input stream of the pod for this call."),
    "stdout": ("boolean", "Redirect the standard output stream of the pod for this call."),
    "tty": ("boolean", "TTY if true indicates that a tty will be allocated for the exec call."),
}

_Q_LIST = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
           "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
           "watch")
_Q_WRITE = ("dryRun", "fieldManager", "fieldValidation")
_Q_PATCH = ("dryRun", "fieldManager", "fieldValidation", "force")
_Q_DELETE = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_Q_DELETE_COLLECTION = ("continue", "dryRun", "fieldSelector", "gracePeriodSeconds",
                        "labelSelector", "limit", "orphanDependents", "propagationPolicy",
                        "resourceVersion", "resourceVersionMatch", "sendInitialEvents",
                        "timeoutSeconds")
_Q_LOG = ("container", "follow", "insecureSkipTLSVerifyBackend", "limitBytes", "previous",
          "sinceSeconds", "tailLines", "timestamps")
_Q_EXEC = ("command", "container", "stderr", "stdin", "stdout", "tty")

# ---------------------------------------------------------------------------------------------
# Operations, in a neutral form rendered to v3 or v2.

_TEXT = "<text>"  # a response or body that is a plain string, not a schema


@dataclass(frozen=True)
class Operation:
    method: str  # get, post, put, patch, delete
    operation_id: str
    action: str  # x-kubernetes-action
    gvk: tuple[str, str, str]
    description: str
    query: tuple[str, ...]
    body: str | None  # schema name of the request body; "Patch" bodies use PATCH_CONTENT_TYPES
    body_required: bool
    responses: tuple[tuple[str, str], ...]  # (status code, schema name or _TEXT)
    watchable: bool = False  # list responses may also be watch streams


@dataclass(frozen=True)
class PathItem:
    path: str
    path_params: tuple[str, ...]  # "namespace", "name"
    operations: tuple[Operation, ...]
    tag: str


def schema_name(group: str, version: str, kind: str) -> str:
    """kube-openapi's definition name: `io.k8s.api.core.v1.Pod`, `io.k8s.api.apps.v1.Deployment`."""
    return f"io.k8s.api.{group.split('.')[0] if group else 'core'}.{version}.{kind}"


def _op_prefix(group: str, version: str) -> str:
    """`CoreV1`, `AppsV1`, `NetworkingV1` — the middle of kube's operation ids."""
    name = group.split(".")[0] if group else "core"
    return name[:1].upper() + name[1:] + version[:1].upper() + version[1:]


def _tag(group: str, version: str) -> str:
    return f"{group.split('.')[0] if group else 'core'}_{version}"


def _resource_paths(info: ResourceInfo) -> list[PathItem]:
    g, v = info.group, info.version
    base = f"/apis/{g}/{v}" if g else f"/api/{v}"
    prefix = _op_prefix(g, v)
    scope = "Namespaced" if info.namespaced else ""
    gvk = (g, v, info.kind)
    kind_schema = schema_name(g, v, info.kind)
    list_schema = schema_name(g, v, info.list_kind)
    status = f"{META}.Status"
    verbs = set(info.verbs)
    tag = _tag(g, v)
    collection = f"{base}/namespaces/{{namespace}}/{info.plural}" if info.namespaced \
        else f"{base}/{info.plural}"
    scope_params = ("namespace",) if info.namespaced else ()
    item = f"{collection}/{{name}}"

    def op(method, verb, action, query, body, responses, suffix="", *, kind=gvk,
           body_required=True, watchable=False, description=""):
        op_id = f"{verb}{prefix}{scope}{info.kind}{suffix}"
        return Operation(method, op_id, action, kind,
                         description or f"{verb} {suffix.lower() or 'the'} {info.kind}",
                         query, body, body_required, responses, watchable)

    items: list[PathItem] = []
    ops = []
    if verbs & {"list", "watch"}:
        ops.append(op("get", "list", "list", _Q_LIST, None, (("200", list_schema),),
                      watchable=True, description=f"list or watch objects of kind {info.kind}"))
    if "create" in verbs:
        ops.append(op("post", "create", "post", _Q_WRITE, kind_schema,
                      (("200", kind_schema), ("201", kind_schema), ("202", kind_schema)),
                      description=f"create a {info.kind}"))
    if "deletecollection" in verbs:
        ops.append(Operation("delete", f"delete{prefix}Collection{scope}{info.kind}",
                             "deletecollection", gvk, f"delete collection of {info.kind}",
                             _Q_DELETE_COLLECTION, f"{META}.DeleteOptions", False,
                             (("200", status),)))
    if ops:
        items.append(PathItem(collection, scope_params, tuple(ops), tag))

    ops = []
    if "get" in verbs:
        ops.append(op("get", "read", "get", (), None, (("200", kind_schema),),
                      description=f"read the specified {info.kind}"))
    if "update" in verbs:
        ops.append(op("put", "replace", "put", _Q_WRITE, kind_schema,
                      (("200", kind_schema), ("201", kind_schema)),
                      description=f"replace the specified {info.kind}"))
    if "patch" in verbs:
        ops.append(op("patch", "patch", "patch", _Q_PATCH, "Patch",
                      (("200", kind_schema), ("201", kind_schema)),
                      description=f"partially update the specified {info.kind}"))
    if "delete" in verbs:
        ops.append(op("delete", "delete", "delete", _Q_DELETE, f"{META}.DeleteOptions",
                      (("200", status), ("202", status)), body_required=False,
                      description=f"delete a {info.kind}"))
    if ops:
        items.append(PathItem(item, scope_params + ("name",), tuple(ops), tag))

    if info.namespaced and verbs & {"list", "watch"}:
        items.append(PathItem(f"{base}/{info.plural}", (), (Operation(
            "get", f"list{prefix}{info.kind}ForAllNamespaces", "list", gvk,
            f"list or watch objects of kind {info.kind} in all namespaces", _Q_LIST, None,
            True, (("200", list_schema),), True),), tag))

    for sub in info.subresources:
        items.append(_subresource_path(info, sub, item, scope_params, op, tag))
    return items


def _subresource_path(info: ResourceInfo, sub: str, item: str, scope_params, op, tag) -> PathItem:
    path, params = f"{item}/{sub}", scope_params + ("name",)
    suffix = sub[:1].upper() + sub[1:]
    if sub in ("status", "scale"):
        body = SCALE_SCHEMA if sub == "scale" else schema_name(info.group, info.version, info.kind)
        gvk = SCALE_GVK if sub == "scale" else (info.group, info.version, info.kind)
        ops = (
            op("get", "read", "get", (), None, (("200", body),), suffix, kind=gvk,
               description=f"read {sub} of the specified {info.kind}"),
            op("put", "replace", "put", _Q_WRITE, body, (("200", body), ("201", body)), suffix,
               kind=gvk, description=f"replace {sub} of the specified {info.kind}"),
            op("patch", "patch", "patch", _Q_PATCH, "Patch", (("200", body), ("201", body)),
               suffix, kind=gvk, description=f"partially update {sub} of the specified "
                                             f"{info.kind}"),
        )
    elif sub == "finalize":
        kind_schema = schema_name(info.group, info.version, info.kind)
        ops = (op("put", "replace", "put", _Q_WRITE, kind_schema,
                  (("200", kind_schema), ("201", kind_schema)), suffix,
                  description=f"replace finalize of the specified {info.kind}"),)
    elif sub == "log":
        ops = (op("get", "read", "get", _Q_LOG, None, (("200", _TEXT),), suffix,
                  description=f"read log of the specified {info.kind}"),)
    elif sub == "exec":
        prefix, scope = _op_prefix(info.group, info.version), "Namespaced" if info.namespaced \
            else ""
        gvk = (info.group, info.version, f"{info.kind}ExecOptions")
        ops = tuple(Operation(method, f"connect{prefix}{method.capitalize()}{scope}{info.kind}"
                              f"Exec", "connect", gvk, f"connect {method.upper()} requests to "
                              f"exec of {info.kind}", _Q_EXEC, None, False, (("200", _TEXT),))
                    for method in ("get", "post"))
    else:
        raise KeyError(f"subresource {info.plural}/{sub} has no OpenAPI operations; add them to "
                       f"_subresource_path in {__name__}")
    return PathItem(path, params, ops, tag)


def operations(group: str, version: str) -> list[PathItem]:
    """Every path of one group-version, in resource order."""
    items: list[PathItem] = []
    for info in in_group_version(group, version):
        items.extend(_resource_paths(info))
    return items


# ---------------------------------------------------------------------------------------------
# Schemas. `ref` turns a definition name into a JSON reference for the target format.

_KIND_DESCRIPTIONS = {
    "Namespace": "Namespace provides a scope for Names. Use of multiple namespaces is optional.",
    "Node": "Node is a worker node in Kubernetes.",
    "Pod": "Pod is a collection of containers that can run on a host.",
    "Service": "Service is a named abstraction of software service (for example, mysql) "
               "consisting of local port (for example 3306) that the proxy listens on, and the "
               "selector that determines which pods will answer requests sent through the proxy.",
    "Endpoints": "Endpoints is a collection of endpoints that implement the actual service.",
    "ConfigMap": "ConfigMap holds configuration data for pods to consume.",
    "Secret": "Secret holds secret data of a certain type.",
    "Event": "Event is a report of an event somewhere in the cluster.",
    "Deployment": "Deployment enables declarative updates for Pods and ReplicaSets.",
    "ReplicaSet": "ReplicaSet ensures that a specified number of pod replicas are running at "
                  "any given time.",
    "StatefulSet": "StatefulSet represents a set of pods with consistent identities.",
    "Ingress": "Ingress is a collection of rules that allow inbound connections to reach the "
               "endpoints defined by a backend.",
    "IngressClass": "IngressClass represents the class of the Ingress, referenced by the "
                    "Ingress Spec.",
    "Lease": "Lease defines a lease concept.",
}


def _any_object(description: str) -> dict:
    return {"description": description, "type": "object",
            "x-kubernetes-preserve-unknown-fields": True}


def _string_map(description: str, fmt: str = "") -> dict:
    value = {"type": "string", "default": ""}
    if fmt:
        value["format"] = fmt
    return {"description": description, "type": "object", "additionalProperties": value}


def _str(description: str, fmt: str = "") -> dict:
    out = {"description": description, "type": "string"}
    if fmt:
        out["format"] = fmt
    return out


def _top_fields(info: ResourceInfo) -> dict[str, dict]:
    """The top-level fields of a kind besides apiVersion/kind/metadata."""
    if info.kind == "ConfigMap":
        return {"data": _string_map("Data contains the configuration data."),
                "binaryData": _string_map("BinaryData contains the binary data.", "byte"),
                "immutable": {"description": "Immutable, if set to true, ensures that data "
                              "stored in the ConfigMap cannot be updated.", "type": "boolean"}}
    if info.kind == "Secret":
        return {"data": _string_map("Data contains the secret data (base64).", "byte"),
                "stringData": _string_map("stringData allows specifying non-binary secret data "
                                          "in string form; merged into data on write."),
                "type": _str("Used to facilitate programmatic handling of secret data."),
                "immutable": {"description": "Immutable, if set to true, ensures that data "
                              "stored in the Secret cannot be updated.", "type": "boolean"}}
    if info.kind == "Endpoints":
        return {"subsets": {"description": "The set of all endpoints is the union of all "
                            "subsets.", "type": "array",
                            "items": _any_object("EndpointSubset is a group of addresses with "
                                                 "a common set of ports."),
                            "x-kubernetes-list-type": "atomic"}}
    if info.kind == "Event":
        obj = _any_object
        return {"involvedObject": obj("The object that this event is about."),
                "reason": _str("Short, machine understandable string for the transition."),
                "message": _str("A human-readable description of the status of this "
                                "operation."),
                "source": obj("The component reporting this event."),
                "firstTimestamp": _str("The time at which the event was first recorded.",
                                       "date-time"),
                "lastTimestamp": _str("The time at which the most recent occurrence of this "
                                      "event was recorded.", "date-time"),
                "count": {"description": "The number of times this event has occurred.",
                          "type": "integer", "format": "int32"},
                "type": _str("Type of this event (Normal, Warning)."),
                "eventTime": _str("Time when this Event was first observed.", "date-time"),
                "series": obj("Data about the Event series this event represents."),
                "action": _str("What action was taken/failed regarding to the Regarding "
                               "object."),
                "related": obj("Optional secondary object for more complex actions."),
                "reportingComponent": _str("Name of the controller that emitted this Event."),
                "reportingInstance": _str("ID of the controller instance.")}
    fields = {"spec": _any_object(f"Spec defines the desired behavior of the {info.kind}.")}
    if "status" in info.subresources:
        fields["status"] = _any_object(f"Most recently observed status of the {info.kind}. "
                                       f"Read-only.")
    return fields


def _gvk_list(group: str, version: str, kind: str) -> list[dict]:
    return [{"group": group, "version": version, "kind": kind}]


def _envelope(ref, description: str, gvks: list[dict], fields: dict, *,
              meta: str = "ObjectMeta", required=()) -> dict:
    props = {
        "apiVersion": _str("APIVersion defines the versioned schema of this representation of "
                           "an object."),
        "kind": _str("Kind is a string value representing the REST resource this object "
                     "represents."),
        "metadata": {"description": "Standard object's metadata.", "default": {},
                     "allOf": [{"$ref": ref(f"{META}.{meta}")}]},
        **fields,
    }
    out = {"description": description, "type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    out["x-kubernetes-group-version-kind"] = gvks
    return out


def _kind_schemas(info: ResourceInfo, ref) -> dict[str, dict]:
    g, v = info.group, info.version
    name = schema_name(g, v, info.kind)
    kind = _envelope(ref, _KIND_DESCRIPTIONS.get(info.kind, f"{info.kind} object."),
                     _gvk_list(g, v, info.kind), _top_fields(info))
    items = {"description": f"List of {info.plural}.", "type": "array",
             "items": {"default": {}, "allOf": [{"$ref": ref(name)}]}}
    lst = _envelope(ref, f"{info.list_kind} is a list of {info.kind} objects.",
                    _gvk_list(g, v, info.list_kind), {"items": items}, meta="ListMeta",
                    required=("items",))
    return {name: kind, schema_name(g, v, info.list_kind): lst}


def _meta_schemas(ref, delete_gvks: list[dict]) -> dict[str, dict]:
    time = _str("Time is a wrapper around time.Time which supports correct marshaling to YAML "
                "and JSON (RFC 3339).", "date-time")
    string_map = _string_map
    return {
        f"{META}.ObjectMeta": {
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "type": "object",
            "properties": {
                "annotations": string_map("Annotations is an unstructured key value map."),
                "creationTimestamp": {**time, "description": "CreationTimestamp is a timestamp "
                                      "representing the server time when this object was "
                                      "created."},
                "deletionGracePeriodSeconds": {"description": "Number of seconds allowed for "
                                               "this object to gracefully terminate.",
                                               "type": "integer", "format": "int64"},
                "deletionTimestamp": {**time, "description": "DeletionTimestamp is RFC 3339 "
                                      "date and time at which this resource will be deleted."},
                "finalizers": {"description": "Must be empty before the object is deleted from "
                               "the registry.", "type": "array",
                               "items": {"type": "string", "default": ""},
                               "x-kubernetes-list-type": "set"},
                "generateName": _str("GenerateName is an optional prefix, used by the server, "
                                     "to generate a unique name."),
                "generation": {"description": "A sequence number representing a specific "
                               "generation of the desired state.", "type": "integer",
                               "format": "int64"},
                "labels": string_map("Map of string keys and values that can be used to "
                                     "organize and categorize objects."),
                "managedFields": {"description": "ManagedFields maps workflow-id and version "
                                  "to the set of fields that are managed by that workflow.",
                                  "type": "array",
                                  "items": _any_object("ManagedFieldsEntry."),
                                  "x-kubernetes-list-type": "atomic"},
                "name": _str("Name must be unique within a namespace."),
                "namespace": _str("Namespace defines the space within which each name must be "
                                  "unique."),
                "ownerReferences": {"description": "List of objects depended by this object.",
                                    "type": "array",
                                    "items": {"default": {}, "allOf": [
                                        {"$ref": ref(f"{META}.OwnerReference")}]},
                                    "x-kubernetes-list-map-keys": ["uid"],
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-patch-merge-key": "uid",
                                    "x-kubernetes-patch-strategy": "merge"},
                "resourceVersion": _str("An opaque value that represents the internal version "
                                        "of this object."),
                "selfLink": _str("Deprecated: selfLink is a legacy read-only field."),
                "uid": _str("UID is the unique in time and space value for this object."),
            },
        },
        f"{META}.OwnerReference": {
            "description": "OwnerReference contains enough information to let you identify an "
                           "owning object.",
            "type": "object",
            "required": ["apiVersion", "kind", "name", "uid"],
            "properties": {
                "apiVersion": _str("API version of the referent."),
                "blockOwnerDeletion": {"description": "If true, the owner cannot be deleted "
                                       "before this reference is removed.", "type": "boolean"},
                "controller": {"description": "If true, this reference points to the managing "
                               "controller.", "type": "boolean"},
                "kind": _str("Kind of the referent."),
                "name": _str("Name of the referent."),
                "uid": _str("UID of the referent."),
            },
            "x-kubernetes-map-type": "atomic",
        },
        f"{META}.ListMeta": {
            "description": "ListMeta describes metadata that synthetic resources must have.",
            "type": "object",
            "properties": {
                "continue": _str("continue may be set if the user set a limit on the number of "
                                 "items returned."),
                "remainingItemCount": {"description": "The number of subsequent items in the "
                                       "list.", "type": "integer", "format": "int64"},
                "resourceVersion": _str("String that identifies the server's internal version "
                                        "of this object."),
                "selfLink": _str("Deprecated: selfLink is a legacy read-only field."),
            },
        },
        f"{META}.Status": _envelope(
            ref, "Status is a return value for calls that don't return other objects.",
            _gvk_list("", "v1", "Status"),
            {"code": {"description": "Suggested HTTP return code for this status.",
                      "type": "integer", "format": "int32"},
             "details": _any_object("Extended data associated with the reason."),
             "message": _str("A human-readable description of the status of this operation."),
             "reason": _str("A machine-readable description of why this operation is in the "
                            "\"Failure\" status."),
             "status": _str("Status of the operation. One of: \"Success\" or \"Failure\".")},
            meta="ListMeta"),
        f"{META}.DeleteOptions": {
            "description": "DeleteOptions may be provided when deleting an API object.",
            "type": "object",
            "properties": {
                "apiVersion": _str("APIVersion defines the versioned schema of this object."),
                "kind": _str("Kind is a string value representing the REST resource."),
                "dryRun": {"description": "When present, indicates that modifications should "
                           "not be persisted.", "type": "array",
                           "items": {"type": "string", "default": ""},
                           "x-kubernetes-list-type": "atomic"},
                "gracePeriodSeconds": {"description": "The duration in seconds before the "
                                       "object should be deleted.", "type": "integer",
                                       "format": "int64"},
                "orphanDependents": {"description": "Deprecated: please use the "
                                     "PropagationPolicy.", "type": "boolean"},
                "preconditions": _any_object("Must be fulfilled before a deletion is carried "
                                             "out."),
                "propagationPolicy": _str("Whether and how garbage collection will be "
                                          "performed."),
            },
            "x-kubernetes-group-version-kind": delete_gvks,
        },
        f"{META}.Patch": {"description": "Patch is provided to give a concrete name and type to "
                                         "the Kubernetes PATCH request body.",
                          "type": "object"},
    }


def _scale_schema(ref) -> dict:
    int32 = {"type": "integer", "format": "int32"}
    return _envelope(
        ref, "Scale represents a scaling request for a resource.", _gvk_list(*SCALE_GVK),
        {"spec": {"description": "spec defines the behavior of the scale.", "type": "object",
                  "properties": {"replicas": {**int32, "description": "replicas is the "
                                              "desired number of instances."}}},
         "status": {"description": "status is the current status of the scale. Read-only.",
                    "type": "object", "required": ["replicas"],
                    "properties": {"replicas": {**int32, "default": 0, "description":
                                                "replicas is the actual number of observed "
                                                "instances."},
                                   "selector": _str("label query over pods that should match "
                                                    "the replicas count.")}}})


def schemas(group: str, version: str, ref) -> dict[str, dict]:
    """Definitions needed by one group-version's operations, keyed by definition name."""
    infos = in_group_version(group, version)
    out = _meta_schemas(ref, _gvk_list(group, version, "DeleteOptions"))
    for info in infos:
        out.update(_kind_schemas(info, ref))
    if any("scale" in info.subresources for info in infos):
        out[SCALE_SCHEMA] = _scale_schema(ref)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------
# OpenAPI v3


def _v3_ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _v3_param(name: str, where: str = "query") -> dict:
    type_, description = _PARAMS.get(name, ("string", ""))
    param = {"name": name, "in": where, "description": description,
             "schema": {"type": type_, "uniqueItems": True}}
    if where == "path":
        param["required"] = True
        param["description"] = f"{name} of the resource" if name == "name" else \
            "object name and auth scope, such as for teams and projects"
    return param


def _v3_operation(op: Operation, tag: str) -> dict:
    out = {"tags": [tag], "description": op.description, "operationId": op.operation_id,
           "parameters": [_v3_param(q) for q in op.query]}
    if op.body == "Patch":
        schema = {"$ref": _v3_ref(f"{META}.Patch")}
        out["requestBody"] = {"content": {t: {"schema": schema} for t in PATCH_CONTENT_TYPES},
                              "required": True}
    elif op.body is not None:
        out["requestBody"] = {"content": {"*/*": {"schema": {"$ref": _v3_ref(op.body)}}},
                              "required": op.body_required}
    responses = {}
    for code, schema_ref in op.responses:
        if schema_ref == _TEXT:
            content = {"*/*": {"schema": {"type": "string"}}}
        else:
            schema = {"$ref": _v3_ref(schema_ref)}
            content = {"application/json": {"schema": schema}}
            if op.watchable:
                content["application/json;stream=watch"] = {"schema": schema}
        responses[code] = {"description": {"200": "OK", "201": "Created",
                                           "202": "Accepted"}[code], "content": content}
    responses["401"] = {"description": "Unauthorized"}
    out["responses"] = responses
    out["x-kubernetes-action"] = op.action
    group, version, kind = op.gvk
    out["x-kubernetes-group-version-kind"] = {"group": group, "version": version, "kind": kind}
    return out


def _v3_paths(group: str, version: str) -> dict:
    paths = {}
    for item in operations(group, version):
        entry = {op.method: _v3_operation(op, item.tag) for op in item.operations}
        entry["parameters"] = [_v3_param(p, "path") for p in item.path_params] \
            + [_v3_param("pretty")]
        paths[item.path] = entry
    return paths


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def document_hash(doc: dict) -> str:
    """sha256 of the canonical JSON, upper-case hex (kube uses sha512; any stable digest works)."""
    return hashlib.sha256(_canonical(doc)).hexdigest().upper()


@functools.lru_cache(maxsize=None)
def _v3_document(group: str, version: str) -> dict | None:
    if not in_group_version(group, version):
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": _v3_paths(group, version),
        "components": {
            "schemas": schemas(group, version, _v3_ref),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description":
                                                "Bearer Token authentication",
                                                "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }


def openapi_v3_document(group: str, version: str) -> dict | None:
    """`/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`; None when not served.

    The returned dict is cached and shared: serialize it, do not mutate it.
    """
    return _v3_document(group, version)


def api_path(group: str, version: str) -> str:
    """`api/v1`, `apis/apps/v1`: the key of a group-version in the v3 root."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.lru_cache(maxsize=1)
def _v3_root() -> dict:
    paths = {}
    for group, version in group_versions():
        doc = _v3_document(group, version)
        paths[api_path(group, version)] = {
            "serverRelativeURL": f"/openapi/v3/{api_path(group, version)}"
                                 f"?hash={document_hash(doc)}"}
    return {"paths": paths}


def openapi_v3_root() -> dict:
    """`/openapi/v3`: every group-version's document URL, with its content hash."""
    return _v3_root()


# ---------------------------------------------------------------------------------------------
# OpenAPI v2 (swagger 2.0)


def _v2_ref(name: str) -> str:
    return f"#/definitions/{name}"


def _v2_param(name: str, where: str = "query") -> dict:
    param = _v3_param(name, where)
    schema = param.pop("schema")
    param.update(schema)
    return param


def _v2_operation(op: Operation, tag: str) -> dict:
    params = [_v2_param(q) for q in op.query]
    consumes = ["*/*"]
    if op.body == "Patch":
        consumes = list(PATCH_CONTENT_TYPES)
        params.insert(0, {"name": "body", "in": "body", "required": True,
                          "schema": {"$ref": _v2_ref(f"{META}.Patch")}})
    elif op.body is not None:
        params.insert(0, {"name": "body", "in": "body", "required": op.body_required,
                          "schema": {"$ref": _v2_ref(op.body)}})
    responses = {}
    for code, schema_ref in op.responses:
        schema = {"type": "string"} if schema_ref == _TEXT else {"$ref": _v2_ref(schema_ref)}
        responses[code] = {"description": {"200": "OK", "201": "Created",
                                           "202": "Accepted"}[code], "schema": schema}
    responses["401"] = {"description": "Unauthorized"}
    produces = ["application/json"]
    if op.watchable:
        produces.append("application/json;stream=watch")
    if any(ref == _TEXT for _, ref in op.responses):
        produces = ["text/plain", "*/*"]
    group, version, kind = op.gvk
    return {"description": op.description, "consumes": consumes, "produces": produces,
            "schemes": ["https"], "tags": [tag], "operationId": op.operation_id,
            "parameters": params, "responses": responses, "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": {"group": group, "version": version,
                                                "kind": kind}}


@functools.lru_cache(maxsize=1)
def _v2_document() -> dict:
    paths, definitions, delete_gvks = {}, {}, []
    for group, version in group_versions():
        for item in operations(group, version):
            entry = {op.method: _v2_operation(op, item.tag) for op in item.operations}
            entry["parameters"] = [_v2_param(p, "path") for p in item.path_params] \
                + [_v2_param("pretty")]
            paths[item.path] = entry
        definitions.update(schemas(group, version, _v2_ref))
        delete_gvks.extend(_gvk_list(group, version, "DeleteOptions"))
    definitions[f"{META}.DeleteOptions"]["x-kubernetes-group-version-kind"] = delete_gvks
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "definitions": dict(sorted(definitions.items())),
        "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication",
                                                "type": "apiKey", "name": "authorization",
                                                "in": "header"}},
        "security": [{"BearerToken": []}],
    }


def openapi_v2() -> dict:
    """`/openapi/v2` as JSON (swagger 2.0, all groups). Cached and shared: do not mutate."""
    return _v2_document()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2: strings and sub-messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def openapi_v2_protobuf() -> bytes:
    """`/openapi/v2` as protobuf: a gnostic openapi_v2.Document.

    Only `swagger` (field 1) and `info` (field 2: title 1, version 2) are set. With no
    definitions and no paths, kubectl finds no v2 schema for any kind: it skips client-side
    validation and computes apply patches from its built-in types (see the module docstring).
    """
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, GIT_VERSION.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info)


def openapi_v2_for(accept: str) -> tuple[bytes, str]:
    """The `/openapi/v2` response body and Content-Type for a request's Accept header.

    kube-openapi's rule: protobuf when the client asks for protobuf and not for JSON (that is
    kubectl and client-go), JSON otherwise. Answering kubectl with JSON breaks it: kubectl
    1.27/1.28 then fail every `apply`, and later versions fail `apply` of a `kind: List`
    ("proto: cannot parse invalid wire-format data").
    """
    accept = accept.lower()
    if "protobuf" in accept and "application/json" not in accept:
        return openapi_v2_protobuf(), OPENAPI_V2_PROTOBUF_CONTENT_TYPE
    return _canonical(openapi_v2()), "application/json"

