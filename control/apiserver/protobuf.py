"""Kubernetes protobuf request bodies, decoded into the JSON dicts the rest of the server sees.

kubectl 1.32+ sends `application/vnd.kubernetes.protobuf` for its typed-client commands
(`kubectl create namespace|deployment|service|configmap|secret|ingress`). Such a body is the
4-byte magic `k8s\\x00` followed by a `runtime.Unknown` message: typeMeta=1 {apiVersion=1,
kind=2}, raw=2 (the object's generated-protobuf message), contentEncoding=3, contentType=4.

Theory of operation: a generic proto2 wire-format reader walks the bytes; `SCHEMA` says, per
message, what each field number means (JSON name and type). The result is what kube-apiserver's
JSON encoding of the same Go object would give:

- Go non-pointer scalars are always on the wire, zero or not, while JSON `omitempty` drops zeros;
  so zero scalars are dropped, except for fields marked `?` (Go pointers, where an explicit 0,
  "" or false means something and JSON keeps it). Present sub-messages become dicts, even empty
  ones (Go struct fields are never omitted from JSON); empty lists and maps never appear.
- IntOrString becomes int or str, Quantity its string, Time/MicroTime RFC 3339 strings (zero
  time omitted, as JSON's `null`), bytes base64 (Secret.data, ConfigMap.binaryData), maps dicts,
  `inline` sub-messages (`json:",inline"`: LocalObjectReference, ProbeHandler, VolumeSource, ...)
  are merged into their parent.
- Unknown field numbers are skipped, as protobuf readers do: a newer kubectl may send fields this
  table does not know. Deprecated in-tree volume plugins (gcePersistentDisk, rbd, ...) are not in
  the table on purpose; nothing meshnet runs can use them.
- A known field with the wrong wire type, a truncated varint or length, or bytes running past
  their message are `ProtobufError`s naming the absolute byte offset in the body and the message
  (with its JSON path) being read.

Field numbers come from kubernetes' generated.proto files (core/v1, apps/v1, networking/v1,
coordination/v1, meta/v1, util/intstr, api/resource); they never change once released.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from meshnet.api import resources

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# Wire types (protobuf encoding spec). Groups (3/4) are deprecated and never used by Kubernetes,
# but a well-formed unknown field may still be one, so they are skipped, not refused.
VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_VARINT_BYTES = 10
_MAX_DEPTH = 100  # Go's proto decoder refuses nesting deeper than this too


class ProtobufError(ValueError):
    """A body that is not valid Kubernetes protobuf; the message says where it went wrong."""


# --- the schema -----------------------------------------------------------------------------
#
# `"jsonName:type"` per field number; the type defaults to string. `[]T` is repeated, `{}T` is
# map<string, T>, a trailing `?` marks a Go pointer (zero kept), `~T` inlines message T into
# the parent. Scalars: string bool int32 int64 bytes; anything else names a message below.

_META = {
    "ObjectMeta": {1: "name", 2: "generateName", 3: "namespace", 4: "selfLink", 5: "uid",
                   6: "resourceVersion", 7: "generation:int64", 8: "creationTimestamp:Time",
                   9: "deletionTimestamp:Time", 10: "deletionGracePeriodSeconds:int64?",
                   11: "labels:{}string", 12: "annotations:{}string",
                   13: "ownerReferences:[]OwnerReference", 14: "finalizers:[]string",
                   17: "managedFields:[]ManagedFieldsEntry"},
    "OwnerReference": {1: "kind", 3: "name", 4: "uid", 5: "apiVersion", 6: "controller:bool?",
                       7: "blockOwnerDeletion:bool?"},
    "ManagedFieldsEntry": {1: "manager", 2: "operation", 3: "apiVersion", 4: "time:Time",
                           6: "fieldsType", 7: "fieldsV1:FieldsV1", 8: "subresource"},
    "LabelSelector": {1: "matchLabels:{}string",
                      2: "matchExpressions:[]LabelSelectorRequirement"},
    "LabelSelectorRequirement": {1: "key", 2: "operator", 3: "values:[]string"},
    "Condition": {1: "type", 2: "status", 3: "observedGeneration:int64",
                  4: "lastTransitionTime:Time", 5: "reason", 6: "message"},
    "DeleteOptions": {1: "gracePeriodSeconds:int64?", 2: "preconditions:Preconditions",
                      3: "orphanDependents:bool?", 4: "propagationPolicy:string?",
                      5: "dryRun:[]string"},
    "Preconditions": {1: "uid:string?", 2: "resourceVersion:string?"},
    # Well-known messages with a JSON form of their own (see _CONVERT).
    "Time": {1: "seconds:int64", 2: "nanos:int32"},
    "MicroTime": {1: "seconds:int64", 2: "nanos:int32"},
    "IntOrString": {1: "type:int64", 2: "intVal:int32", 3: "strVal"},
    "Quantity": {1: "string"},
    "FieldsV1": {1: "Raw:bytes"},
    # runtime.TypeMeta of the envelope; metav1.TypeMeta has the two numbers the other way round.
    "_TypeMeta": {1: "apiVersion", 2: "kind"},
}

_CORE = {
    "Namespace": {1: "metadata:ObjectMeta", 2: "spec:NamespaceSpec", 3: "status:NamespaceStatus"},
    "NamespaceSpec": {1: "finalizers:[]string"},
    "NamespaceStatus": {1: "phase", 2: "conditions:[]NamespaceCondition"},
    "NamespaceCondition": {1: "type", 2: "status", 4: "lastTransitionTime:Time", 5: "reason",
                           6: "message"},
    "ConfigMap": {1: "metadata:ObjectMeta", 2: "data:{}string", 3: "binaryData:{}bytes",
                  4: "immutable:bool?"},
    "Secret": {1: "metadata:ObjectMeta", 2: "data:{}bytes", 3: "type", 4: "stringData:{}string",
               5: "immutable:bool?"},
    "Service": {1: "metadata:ObjectMeta", 2: "spec:ServiceSpec", 3: "status:ServiceStatus"},
    "ServiceSpec": {1: "ports:[]ServicePort", 2: "selector:{}string", 3: "clusterIP", 4: "type",
                    5: "externalIPs:[]string", 7: "sessionAffinity", 8: "loadBalancerIP",
                    9: "loadBalancerSourceRanges:[]string", 10: "externalName",
                    11: "externalTrafficPolicy", 12: "healthCheckNodePort:int32",
                    13: "publishNotReadyAddresses:bool",
                    14: "sessionAffinityConfig:SessionAffinityConfig",
                    17: "ipFamilyPolicy:string?", 18: "clusterIPs:[]string",
                    19: "ipFamilies:[]string", 20: "allocateLoadBalancerNodePorts:bool?",
                    21: "loadBalancerClass:string?", 22: "internalTrafficPolicy:string?",
                    23: "trafficDistribution:string?"},
    "ServicePort": {1: "name", 2: "protocol", 3: "port:int32", 4: "targetPort:IntOrString",
                    5: "nodePort:int32", 6: "appProtocol:string?"},
    "SessionAffinityConfig": {1: "clientIP:ClientIPConfig"},
    "ClientIPConfig": {1: "timeoutSeconds:int32?"},
    "ServiceStatus": {1: "loadBalancer:LoadBalancerStatus", 2: "conditions:[]Condition"},
    "LoadBalancerStatus": {1: "ingress:[]LoadBalancerIngress"},
    "LoadBalancerIngress": {1: "ip", 2: "hostname", 3: "ipMode:string?", 4: "ports:[]PortStatus"},
    "PortStatus": {1: "port:int32", 2: "protocol", 3: "error:string?"},
    "Endpoints": {1: "metadata:ObjectMeta", 2: "subsets:[]EndpointSubset"},
    "EndpointSubset": {1: "addresses:[]EndpointAddress", 2: "notReadyAddresses:[]EndpointAddress",
                       3: "ports:[]EndpointPort"},
    "EndpointAddress": {1: "ip", 2: "targetRef:ObjectReference", 3: "hostname",
                        4: "nodeName:string?"},
    "EndpointPort": {1: "name", 2: "port:int32", 3: "protocol", 4: "appProtocol:string?"},
    "ObjectReference": {1: "kind", 2: "namespace", 3: "name", 4: "uid", 5: "apiVersion",
                        6: "resourceVersion", 7: "fieldPath"},
    "Event": {1: "metadata:ObjectMeta", 2: "involvedObject:ObjectReference", 3: "reason",
              4: "message", 5: "source:EventSource", 6: "firstTimestamp:Time",
              7: "lastTimestamp:Time", 8: "count:int32", 9: "type", 10: "eventTime:MicroTime",
              11: "series:EventSeries", 12: "action", 13: "related:ObjectReference",
              14: "reportingComponent", 15: "reportingInstance"},
    "EventSource": {1: "component", 2: "host"},
    "EventSeries": {1: "count:int32", 2: "lastObservedTime:MicroTime"},
    "Node": {1: "metadata:ObjectMeta", 2: "spec:NodeSpec", 3: "status:NodeStatus"},
    "NodeSpec": {1: "podCIDR", 2: "externalID", 3: "providerID", 4: "unschedulable:bool",
                 5: "taints:[]Taint", 7: "podCIDRs:[]string"},
    "Taint": {1: "key", 2: "value", 3: "effect", 4: "timeAdded:Time"},
    "NodeStatus": {1: "capacity:{}Quantity", 2: "allocatable:{}Quantity", 3: "phase",
                   4: "conditions:[]NodeCondition", 5: "addresses:[]NodeAddress",
                   6: "daemonEndpoints:NodeDaemonEndpoints", 7: "nodeInfo:NodeSystemInfo",
                   8: "images:[]ContainerImage", 9: "volumesInUse:[]string",
                   10: "volumesAttached:[]AttachedVolume", 14: "declaredFeatures:[]string"},
    "NodeCondition": {1: "type", 2: "status", 3: "lastHeartbeatTime:Time",
                      4: "lastTransitionTime:Time", 5: "reason", 6: "message"},
    "NodeAddress": {1: "type", 2: "address"},
    "NodeDaemonEndpoints": {1: "kubeletEndpoint:DaemonEndpoint"},
    "DaemonEndpoint": {1: "Port:int32"},
    "NodeSystemInfo": {1: "machineID", 2: "systemUUID", 3: "bootID", 4: "kernelVersion",
                       5: "osImage", 6: "containerRuntimeVersion", 7: "kubeletVersion",
                       8: "kubeProxyVersion", 9: "operatingSystem", 10: "architecture"},
    "ContainerImage": {1: "names:[]string", 2: "sizeBytes:int64"},
    "AttachedVolume": {1: "name", 2: "devicePath"},
}

_POD = {
    "Pod": {1: "metadata:ObjectMeta", 2: "spec:PodSpec", 3: "status:PodStatus"},
    "PodTemplateSpec": {1: "metadata:ObjectMeta", 2: "spec:PodSpec"},
    "PodSpec": {1: "volumes:[]Volume", 2: "containers:[]Container", 3: "restartPolicy",
                4: "terminationGracePeriodSeconds:int64?", 5: "activeDeadlineSeconds:int64?",
                6: "dnsPolicy", 7: "nodeSelector:{}string", 8: "serviceAccountName",
                9: "serviceAccount", 10: "nodeName", 11: "hostNetwork:bool", 12: "hostPID:bool",
                13: "hostIPC:bool", 14: "securityContext:PodSecurityContext",
                15: "imagePullSecrets:[]LocalObjectReference", 16: "hostname", 17: "subdomain",
                18: "affinity:Affinity", 19: "schedulerName", 20: "initContainers:[]Container",
                21: "automountServiceAccountToken:bool?", 22: "tolerations:[]Toleration",
                23: "hostAliases:[]HostAlias", 24: "priorityClassName", 25: "priority:int32?",
                26: "dnsConfig:PodDNSConfig", 27: "shareProcessNamespace:bool?",
                28: "readinessGates:[]PodReadinessGate", 29: "runtimeClassName:string?",
                30: "enableServiceLinks:bool?", 31: "preemptionPolicy:string?",
                32: "overhead:{}Quantity",
                33: "topologySpreadConstraints:[]TopologySpreadConstraint",
                34: "ephemeralContainers:[]EphemeralContainer", 35: "setHostnameAsFQDN:bool?",
                36: "os:PodOS", 37: "hostUsers:bool?", 38: "schedulingGates:[]PodSchedulingGate",
                39: "resourceClaims:[]PodResourceClaim", 40: "resources:ResourceRequirements",
                41: "hostnameOverride:string?", 42: "workloadRef:WorkloadReference"},
    "PodOS": {1: "name"},
    "PodReadinessGate": {1: "conditionType"},
    "PodSchedulingGate": {1: "name"},
    "PodResourceClaim": {1: "name", 3: "resourceClaimName:string?",
                         4: "resourceClaimTemplateName:string?"},
    "WorkloadReference": {1: "name", 2: "podGroup", 3: "podGroupReplicaKey"},
    "HostAlias": {1: "ip", 2: "hostnames:[]string"},
    "PodDNSConfig": {1: "nameservers:[]string", 2: "searches:[]string",
                     3: "options:[]PodDNSConfigOption"},
    "PodDNSConfigOption": {1: "name", 2: "value:string?"},
    "Toleration": {1: "key", 2: "operator", 3: "value", 4: "effect",
                   5: "tolerationSeconds:int64?"},
    "TopologySpreadConstraint": {1: "maxSkew:int32", 2: "topologyKey", 3: "whenUnsatisfiable",
                                 4: "labelSelector:LabelSelector", 5: "minDomains:int32?",
                                 6: "nodeAffinityPolicy:string?", 7: "nodeTaintsPolicy:string?",
                                 8: "matchLabelKeys:[]string"},
    "Affinity": {1: "nodeAffinity:NodeAffinity", 2: "podAffinity:PodAffinity",
                 3: "podAntiAffinity:PodAffinity"},
    "NodeAffinity": {1: "requiredDuringSchedulingIgnoredDuringExecution:NodeSelector",
                     2: "preferredDuringSchedulingIgnoredDuringExecution:"
                        "[]PreferredSchedulingTerm"},
    "NodeSelector": {1: "nodeSelectorTerms:[]NodeSelectorTerm"},
    "NodeSelectorTerm": {1: "matchExpressions:[]NodeSelectorRequirement",
                         2: "matchFields:[]NodeSelectorRequirement"},
    "NodeSelectorRequirement": {1: "key", 2: "operator", 3: "values:[]string"},
    "PreferredSchedulingTerm": {1: "weight:int32", 2: "preference:NodeSelectorTerm"},
    # PodAffinity and PodAntiAffinity share their field numbers and names.
    "PodAffinity": {1: "requiredDuringSchedulingIgnoredDuringExecution:[]PodAffinityTerm",
                    2: "preferredDuringSchedulingIgnoredDuringExecution:"
                       "[]WeightedPodAffinityTerm"},
    "PodAffinityTerm": {1: "labelSelector:LabelSelector", 2: "namespaces:[]string",
                        3: "topologyKey", 4: "namespaceSelector:LabelSelector",
                        5: "matchLabelKeys:[]string", 6: "mismatchLabelKeys:[]string"},
    "WeightedPodAffinityTerm": {1: "weight:int32", 2: "podAffinityTerm:PodAffinityTerm"},
    "PodSecurityContext": {1: "seLinuxOptions:SELinuxOptions", 2: "runAsUser:int64?",
                           3: "runAsNonRoot:bool?", 4: "supplementalGroups:[]int64",
                           5: "fsGroup:int64?", 6: "runAsGroup:int64?", 7: "sysctls:[]Sysctl",
                           8: "windowsOptions:WindowsSecurityContextOptions",
                           9: "fsGroupChangePolicy:string?", 10: "seccompProfile:SeccompProfile",
                           11: "appArmorProfile:AppArmorProfile",
                           12: "supplementalGroupsPolicy:string?",
                           13: "seLinuxChangePolicy:string?"},
    "SecurityContext": {1: "capabilities:Capabilities", 2: "privileged:bool?",
                        3: "seLinuxOptions:SELinuxOptions", 4: "runAsUser:int64?",
                        5: "runAsNonRoot:bool?", 6: "readOnlyRootFilesystem:bool?",
                        7: "allowPrivilegeEscalation:bool?", 8: "runAsGroup:int64?",
                        9: "procMount:string?", 10: "windowsOptions:WindowsSecurityContextOptions",
                        11: "seccompProfile:SeccompProfile",
                        12: "appArmorProfile:AppArmorProfile", 13: "ulimits:[]Ulimit"},
    "Capabilities": {1: "add:[]string", 2: "drop:[]string"},
    "SELinuxOptions": {1: "user", 2: "role", 3: "type", 4: "level"},
    "Sysctl": {1: "name", 2: "value"},
    "Ulimit": {1: "name", 2: "hard:int64", 3: "soft:int64"},
    "WindowsSecurityContextOptions": {1: "gmsaCredentialSpecName:string?",
                                      2: "gmsaCredentialSpec:string?",
                                      3: "runAsUserName:string?", 4: "hostProcess:bool?"},
    "SeccompProfile": {1: "type", 2: "localhostProfile:string?"},
    "AppArmorProfile": {1: "type", 2: "localhostProfile:string?"},
    "Container": {1: "name", 2: "image", 3: "command:[]string", 4: "args:[]string",
                  5: "workingDir", 6: "ports:[]ContainerPort", 7: "env:[]EnvVar",
                  8: "resources:ResourceRequirements", 9: "volumeMounts:[]VolumeMount",
                  10: "livenessProbe:Probe", 11: "readinessProbe:Probe",
                  12: "lifecycle:Lifecycle", 13: "terminationMessagePath",
                  14: "imagePullPolicy", 15: "securityContext:SecurityContext", 16: "stdin:bool",
                  17: "stdinOnce:bool", 18: "tty:bool", 19: "envFrom:[]EnvFromSource",
                  20: "terminationMessagePolicy", 21: "volumeDevices:[]VolumeDevice",
                  22: "startupProbe:Probe", 23: "resizePolicy:[]ContainerResizePolicy",
                  24: "restartPolicy:string?", 25: "restartPolicyRules:[]ContainerRestartRule"},
    "EphemeralContainer": {1: "~EphemeralContainerCommon", 2: "targetContainerName"},
    "ContainerPort": {1: "name", 2: "hostPort:int32", 3: "containerPort:int32", 4: "protocol",
                      5: "hostIP"},
    "ContainerResizePolicy": {1: "resourceName", 2: "restartPolicy"},
    "ContainerRestartRule": {1: "action", 2: "exitCodes:ContainerRestartRuleOnExitCodes"},
    "ContainerRestartRuleOnExitCodes": {1: "operator", 2: "values:[]int32"},
    "VolumeDevice": {1: "name", 2: "devicePath"},
    "EnvVar": {1: "name", 2: "value", 3: "valueFrom:EnvVarSource"},
    "EnvVarSource": {1: "fieldRef:ObjectFieldSelector", 2: "resourceFieldRef:ResourceFieldSelector",
                     3: "configMapKeyRef:ConfigMapKeySelector",
                     4: "secretKeyRef:SecretKeySelector", 5: "fileKeyRef:FileKeySelector"},
    "ObjectFieldSelector": {1: "apiVersion", 2: "fieldPath"},
    "ResourceFieldSelector": {1: "containerName", 2: "resource", 3: "divisor:Quantity"},
    "ConfigMapKeySelector": {1: "~LocalObjectReference", 2: "key", 3: "optional:bool?"},
    "SecretKeySelector": {1: "~LocalObjectReference", 2: "key", 3: "optional:bool?"},
    "FileKeySelector": {1: "volumeName", 2: "path", 3: "key", 4: "optional:bool?"},
    "LocalObjectReference": {1: "name"},
    "EnvFromSource": {1: "prefix", 2: "configMapRef:ConfigMapEnvSource",
                      3: "secretRef:SecretEnvSource"},
    "ConfigMapEnvSource": {1: "~LocalObjectReference", 2: "optional:bool?"},
    "SecretEnvSource": {1: "~LocalObjectReference", 2: "optional:bool?"},
    "ResourceRequirements": {1: "limits:{}Quantity", 2: "requests:{}Quantity",
                             3: "claims:[]ResourceClaim"},
    "ResourceClaim": {1: "name", 2: "request"},
    "VolumeMount": {1: "name", 2: "readOnly:bool", 3: "mountPath", 4: "subPath",
                    5: "mountPropagation:string?", 6: "subPathExpr",
                    7: "recursiveReadOnly:string?"},
    "Probe": {1: "~ProbeHandler", 2: "initialDelaySeconds:int32", 3: "timeoutSeconds:int32",
              4: "periodSeconds:int32", 5: "successThreshold:int32", 6: "failureThreshold:int32",
              7: "terminationGracePeriodSeconds:int64?"},
    "ProbeHandler": {1: "exec:ExecAction", 2: "httpGet:HTTPGetAction",
                     3: "tcpSocket:TCPSocketAction", 4: "grpc:GRPCAction"},
    "ExecAction": {1: "command:[]string"},
    "HTTPGetAction": {1: "path", 2: "port:IntOrString", 3: "host", 4: "scheme",
                      5: "httpHeaders:[]HTTPHeader"},
    "HTTPHeader": {1: "name", 2: "value"},
    "TCPSocketAction": {1: "port:IntOrString", 2: "host"},
    "GRPCAction": {1: "port:int32", 2: "service:string?"},
    "Lifecycle": {1: "postStart:LifecycleHandler", 2: "preStop:LifecycleHandler",
                  3: "stopSignal:string?"},
    "LifecycleHandler": {1: "exec:ExecAction", 2: "httpGet:HTTPGetAction",
                         3: "tcpSocket:TCPSocketAction", 4: "sleep:SleepAction"},
    "SleepAction": {1: "seconds:int64"},
    "PodStatus": {1: "phase", 2: "conditions:[]PodCondition", 3: "message", 4: "reason",
                  5: "hostIP", 6: "podIP", 7: "startTime:Time",
                  8: "containerStatuses:[]ContainerStatus", 9: "qosClass",
                  10: "initContainerStatuses:[]ContainerStatus", 11: "nominatedNodeName",
                  12: "podIPs:[]PodIP", 13: "ephemeralContainerStatuses:[]ContainerStatus",
                  16: "hostIPs:[]HostIP", 17: "observedGeneration:int64"},
    "PodCondition": {1: "type", 2: "status", 3: "lastProbeTime:Time", 4: "lastTransitionTime:Time",
                     5: "reason", 6: "message", 7: "observedGeneration:int64"},
    "PodIP": {1: "ip"},
    "HostIP": {1: "ip"},
    "ContainerStatus": {1: "name", 2: "state:ContainerState", 3: "lastState:ContainerState",
                        4: "ready:bool", 5: "restartCount:int32", 6: "image", 7: "imageID",
                        8: "containerID", 9: "started:bool?", 10: "allocatedResources:{}Quantity",
                        11: "resources:ResourceRequirements", 15: "stopSignal:string?"},
    "ContainerState": {1: "waiting:ContainerStateWaiting", 2: "running:ContainerStateRunning",
                       3: "terminated:ContainerStateTerminated"},
    "ContainerStateWaiting": {1: "reason", 2: "message"},
    "ContainerStateRunning": {1: "startedAt:Time"},
    "ContainerStateTerminated": {1: "exitCode:int32", 2: "signal:int32", 3: "reason",
                                 4: "message", 5: "startedAt:Time", 6: "finishedAt:Time",
                                 7: "containerID"},
}
_POD["EphemeralContainerCommon"] = _POD["Container"]  # "a copy of all fields in Container"

_VOLUMES = {
    "Volume": {1: "name", 2: "~VolumeSource"},
    "VolumeSource": {1: "hostPath:HostPathVolumeSource", 2: "emptyDir:EmptyDirVolumeSource",
                     6: "secret:SecretVolumeSource", 7: "nfs:NFSVolumeSource",
                     10: "persistentVolumeClaim:PersistentVolumeClaimVolumeSource",
                     16: "downwardAPI:DownwardAPIVolumeSource",
                     19: "configMap:ConfigMapVolumeSource", 26: "projected:ProjectedVolumeSource",
                     28: "csi:CSIVolumeSource", 29: "ephemeral:EphemeralVolumeSource",
                     30: "image:ImageVolumeSource"},
    "HostPathVolumeSource": {1: "path", 2: "type:string?"},
    "EmptyDirVolumeSource": {1: "medium", 2: "sizeLimit:Quantity"},
    "SecretVolumeSource": {1: "secretName", 2: "items:[]KeyToPath", 3: "defaultMode:int32?",
                           4: "optional:bool?"},
    "ConfigMapVolumeSource": {1: "~LocalObjectReference", 2: "items:[]KeyToPath",
                              3: "defaultMode:int32?", 4: "optional:bool?"},
    "KeyToPath": {1: "key", 2: "path", 3: "mode:int32?"},
    "NFSVolumeSource": {1: "server", 2: "path", 3: "readOnly:bool"},
    "PersistentVolumeClaimVolumeSource": {1: "claimName", 2: "readOnly:bool"},
    "DownwardAPIVolumeSource": {1: "items:[]DownwardAPIVolumeFile", 2: "defaultMode:int32?"},
    "DownwardAPIVolumeFile": {1: "path", 2: "fieldRef:ObjectFieldSelector",
                              3: "resourceFieldRef:ResourceFieldSelector", 4: "mode:int32?"},
    "ProjectedVolumeSource": {1: "sources:[]VolumeProjection", 2: "defaultMode:int32?"},
    "VolumeProjection": {1: "secret:SecretProjection", 2: "downwardAPI:DownwardAPIProjection",
                         3: "configMap:ConfigMapProjection",
                         4: "serviceAccountToken:ServiceAccountTokenProjection",
                         5: "clusterTrustBundle:ClusterTrustBundleProjection"},
    "SecretProjection": {1: "~LocalObjectReference", 2: "items:[]KeyToPath", 4: "optional:bool?"},
    "ConfigMapProjection": {1: "~LocalObjectReference", 2: "items:[]KeyToPath",
                            4: "optional:bool?"},
    "DownwardAPIProjection": {1: "items:[]DownwardAPIVolumeFile"},
    "ServiceAccountTokenProjection": {1: "audience", 2: "expirationSeconds:int64?", 3: "path"},
    "ClusterTrustBundleProjection": {1: "name:string?", 2: "signerName:string?",
                                     3: "labelSelector:LabelSelector", 4: "path",
                                     5: "optional:bool?"},
    "CSIVolumeSource": {1: "driver", 2: "readOnly:bool?", 3: "fsType:string?",
                        4: "volumeAttributes:{}string",
                        5: "nodePublishSecretRef:LocalObjectReference"},
    "EphemeralVolumeSource": {1: "volumeClaimTemplate:PersistentVolumeClaimTemplate"},
    "ImageVolumeSource": {1: "reference", 2: "pullPolicy"},
    "PersistentVolumeClaimTemplate": {1: "metadata:ObjectMeta",
                                      2: "spec:PersistentVolumeClaimSpec"},
    "PersistentVolumeClaim": {1: "metadata:ObjectMeta", 2: "spec:PersistentVolumeClaimSpec",
                              3: "status:PersistentVolumeClaimStatus"},
    "PersistentVolumeClaimSpec": {1: "accessModes:[]string",
                                  2: "resources:VolumeResourceRequirements", 3: "volumeName",
                                  4: "selector:LabelSelector", 5: "storageClassName:string?",
                                  6: "volumeMode:string?",
                                  7: "dataSource:TypedLocalObjectReference",
                                  8: "dataSourceRef:TypedObjectReference",
                                  9: "volumeAttributesClassName:string?"},
    "PersistentVolumeClaimStatus": {1: "phase", 2: "accessModes:[]string",
                                    3: "capacity:{}Quantity"},
    "VolumeResourceRequirements": {1: "limits:{}Quantity", 2: "requests:{}Quantity"},
    "TypedLocalObjectReference": {1: "apiGroup:string?", 2: "kind", 3: "name"},
    "TypedObjectReference": {1: "apiGroup:string?", 2: "kind", 3: "name", 4: "namespace:string?"},
}

_APPS = {
    "Deployment": {1: "metadata:ObjectMeta", 2: "spec:DeploymentSpec",
                   3: "status:DeploymentStatus"},
    "DeploymentSpec": {1: "replicas:int32?", 2: "selector:LabelSelector",
                       3: "template:PodTemplateSpec", 4: "strategy:DeploymentStrategy",
                       5: "minReadySeconds:int32", 6: "revisionHistoryLimit:int32?",
                       7: "paused:bool", 9: "progressDeadlineSeconds:int32?",
                       10: "podReplacementPolicy:string?"},
    "DeploymentStrategy": {1: "type", 2: "rollingUpdate:RollingUpdateDeployment"},
    "RollingUpdateDeployment": {1: "maxUnavailable:IntOrString", 2: "maxSurge:IntOrString"},
    "DeploymentStatus": {1: "observedGeneration:int64", 2: "replicas:int32",
                         3: "updatedReplicas:int32", 4: "availableReplicas:int32",
                         5: "unavailableReplicas:int32", 6: "conditions:[]DeploymentCondition",
                         7: "readyReplicas:int32", 8: "collisionCount:int32?",
                         9: "terminatingReplicas:int32?"},
    "DeploymentCondition": {1: "type", 2: "status", 4: "reason", 5: "message",
                            6: "lastUpdateTime:Time", 7: "lastTransitionTime:Time"},
    "ReplicaSet": {1: "metadata:ObjectMeta", 2: "spec:ReplicaSetSpec",
                   3: "status:ReplicaSetStatus"},
    "ReplicaSetSpec": {1: "replicas:int32?", 2: "selector:LabelSelector",
                       3: "template:PodTemplateSpec", 4: "minReadySeconds:int32"},
    "ReplicaSetStatus": {1: "replicas:int32", 2: "fullyLabeledReplicas:int32",
                         3: "observedGeneration:int64", 4: "readyReplicas:int32",
                         5: "availableReplicas:int32", 6: "conditions:[]ReplicaSetCondition",
                         7: "terminatingReplicas:int32?"},
    "ReplicaSetCondition": {1: "type", 2: "status", 3: "lastTransitionTime:Time", 4: "reason",
                            5: "message"},
    "StatefulSet": {1: "metadata:ObjectMeta", 2: "spec:StatefulSetSpec",
                    3: "status:StatefulSetStatus"},
    "StatefulSetSpec": {1: "replicas:int32?", 2: "selector:LabelSelector",
                        3: "template:PodTemplateSpec",
                        4: "volumeClaimTemplates:[]PersistentVolumeClaim", 5: "serviceName",
                        6: "podManagementPolicy", 7: "updateStrategy:StatefulSetUpdateStrategy",
                        8: "revisionHistoryLimit:int32?", 9: "minReadySeconds:int32",
                        10: "persistentVolumeClaimRetentionPolicy:"
                            "StatefulSetPersistentVolumeClaimRetentionPolicy",
                        11: "ordinals:StatefulSetOrdinals"},
    "StatefulSetUpdateStrategy": {1: "type", 2: "rollingUpdate:RollingUpdateStatefulSetStrategy"},
    "RollingUpdateStatefulSetStrategy": {1: "partition:int32?", 2: "maxUnavailable:IntOrString"},
    "StatefulSetPersistentVolumeClaimRetentionPolicy": {1: "whenDeleted", 2: "whenScaled"},
    "StatefulSetOrdinals": {1: "start:int32"},
    "StatefulSetStatus": {1: "observedGeneration:int64", 2: "replicas:int32",
                          3: "readyReplicas:int32", 4: "currentReplicas:int32",
                          5: "updatedReplicas:int32", 6: "currentRevision", 7: "updateRevision",
                          9: "collisionCount:int32?", 10: "conditions:[]StatefulSetCondition",
                          11: "availableReplicas:int32"},
    "StatefulSetCondition": {1: "type", 2: "status", 3: "lastTransitionTime:Time", 4: "reason",
                             5: "message"},
}

_NETWORKING_COORDINATION = {
    "Ingress": {1: "metadata:ObjectMeta", 2: "spec:IngressSpec", 3: "status:IngressStatus"},
    "IngressSpec": {1: "defaultBackend:IngressBackend", 2: "tls:[]IngressTLS",
                    3: "rules:[]IngressRule", 4: "ingressClassName:string?"},
    "IngressBackend": {3: "resource:TypedLocalObjectReference", 4: "service:IngressServiceBackend"},
    "IngressServiceBackend": {1: "name", 2: "port:ServiceBackendPort"},
    "ServiceBackendPort": {1: "name", 2: "number:int32"},
    "IngressTLS": {1: "hosts:[]string", 2: "secretName"},
    "IngressRule": {1: "host", 2: "~IngressRuleValue"},
    "IngressRuleValue": {1: "http:HTTPIngressRuleValue"},
    "HTTPIngressRuleValue": {1: "paths:[]HTTPIngressPath"},
    "HTTPIngressPath": {1: "path", 2: "backend:IngressBackend", 3: "pathType:string?"},
    "IngressStatus": {1: "loadBalancer:IngressLoadBalancerStatus"},
    "IngressLoadBalancerStatus": {1: "ingress:[]IngressLoadBalancerIngress"},
    "IngressLoadBalancerIngress": {1: "ip", 2: "hostname", 4: "ports:[]IngressPortStatus"},
    "IngressPortStatus": {1: "port:int32", 2: "protocol", 3: "error:string?"},
    "IngressClass": {1: "metadata:ObjectMeta", 2: "spec:IngressClassSpec"},
    "IngressClassSpec": {1: "controller", 2: "parameters:IngressClassParametersReference"},
    # The proto field is spelled `aPIGroup`; its JSON name is apiGroup.
    "IngressClassParametersReference": {1: "apiGroup:string?", 2: "kind", 3: "name",
                                        4: "scope:string?", 5: "namespace:string?"},
    "Lease": {1: "metadata:ObjectMeta", 2: "spec:LeaseSpec"},
    "LeaseSpec": {1: "holderIdentity:string?", 2: "leaseDurationSeconds:int32?",
                  3: "acquireTime:MicroTime", 4: "renewTime:MicroTime",
                  5: "leaseTransitions:int32?", 6: "strategy:string?",
                  7: "preferredHolder:string?"},
}

_SCALARS = frozenset({"string", "bool", "int32", "int64", "bytes"})


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    name: str  # JSON name; "" for an inlined message
    type: str  # a scalar from _SCALARS or a message name in SCHEMA
    repeated: bool = False
    map: bool = False  # map<string, type>
    pointer: bool = False  # Go pointer: an explicit zero value is kept
    inline: bool = False

    @property
    def scalar(self) -> bool:
        return self.type in _SCALARS


def _parse_field(number: int, spec: str) -> Field:
    if spec.startswith("~"):
        return Field(number, "", spec[1:], inline=True)
    name, _, typ = spec.partition(":")
    typ = typ or "string"
    pointer = typ.endswith("?")
    typ = typ.rstrip("?")
    repeated, is_map = typ.startswith("[]"), typ.startswith("{}")
    return Field(number, name, typ[2:] if repeated or is_map else typ, repeated, is_map, pointer)


def _compile(*tables: dict) -> dict[str, dict[int, Field]]:
    schema = {msg: {n: _parse_field(n, spec) for n, spec in fields.items()}
              for table in tables for msg, fields in table.items()}
    for msg, fields in schema.items():
        for f in fields.values():
            if not f.scalar and f.type not in schema:
                raise AssertionError(f"protobuf schema: {msg}.{f.number} names unknown "
                                     f"message {f.type!r}")
    return schema


SCHEMA: dict[str, dict[int, Field]] = _compile(_META, _CORE, _POD, _VOLUMES, _APPS,
                                               _NETWORKING_COORDINATION)

# (apiVersion, kind) -> top-level message. Every served kind has its message of the same name;
# DeleteOptions may come with any group's version (it is registered in all of them).
KINDS: dict[tuple[str, str], str] = {(r.api_version, r.kind): r.kind
                                     for r in resources.RESOURCES}


# --- the wire-format reader -----------------------------------------------------------------

class _Omit:
    """Marks a decoded value that JSON would not show (zero Time)."""


_OMIT = _Omit()


def _fail(at: int, where: str, problem: str) -> ProtobufError:
    return ProtobufError(f"invalid protobuf body at byte {at} in {where}: {problem}")


def _varint(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    result = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise _fail(start, where, "varint runs past the end of the message")
        if pos - start >= _MAX_VARINT_BYTES:
            raise _fail(start, where, "varint is longer than 10 bytes")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7


def _length(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    at = pos
    n, pos = _varint(buf, pos, end, where)
    if n > end - pos:
        raise _fail(at, where, f"length {n} runs past the end of the message "
                               f"({end - pos} bytes left)")
    return pos, pos + n


def _skip(buf: bytes, pos: int, end: int, wire_type: int, number: int, at: int,
          where: str, depth: int) -> int:
    if wire_type == VARINT:
        return _varint(buf, pos, end, where)[1]
    if wire_type in (FIXED64, FIXED32):
        size = 8 if wire_type == FIXED64 else 4
        if end - pos < size:
            raise _fail(at, where, f"fixed-size field {number} runs past the end of the message")
        return pos + size
    if wire_type == LEN:
        return _length(buf, pos, end, where)[1]
    if wire_type == START_GROUP:
        if depth > _MAX_DEPTH:
            raise _fail(at, where, "groups nested too deeply")
        while True:
            tag_at = pos
            key, pos = _varint(buf, pos, end, where)
            if key & 7 == END_GROUP:
                if key >> 3 != number:
                    raise _fail(tag_at, where, f"group {number} ends with field {key >> 3}")
                return pos
            pos = _skip(buf, pos, end, key & 7, key >> 3, tag_at, where, depth + 1)
    if wire_type == END_GROUP:
        raise _fail(at, where, f"end of group {number} without its start")
    raise _fail(at, where, f"field {number} has invalid wire type {wire_type}")


def _signed(value: int, bits: int) -> int:
    """Two's complement: Go writes a negative int32/int64 as a 10-byte varint."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _scalar(buf: bytes, typ: str, wire_type: int, pos: int, end: int, at: int,
            where: str) -> tuple[object, int]:
    if typ in ("string", "bytes"):
        if wire_type != LEN:
            raise _fail(at, where, f"expected a length-delimited {typ}, got wire type {wire_type}")
        start, pos = _length(buf, pos, end, where)
        raw = bytes(buf[start:pos])
        if typ == "bytes":
            return base64.b64encode(raw).decode("ascii"), pos  # as encoding/json does
        # Go strings may hold any bytes; encoding/json writes invalid UTF-8 as U+FFFD.
        return raw.decode("utf-8", errors="replace"), pos
    if wire_type != VARINT:
        raise _fail(at, where, f"expected a varint {typ}, got wire type {wire_type}")
    value, pos = _varint(buf, pos, end, where)
    if typ == "bool":
        return value != 0, pos
    return _signed(value, 32 if typ == "int32" else 64), pos


def _is_zero(value) -> bool:
    return value == 0 or value == "" or value is False


def _decode_message(buf: bytes, pos: int, end: int, msg: str, path: str, depth: int,
                    out: dict | None = None) -> dict:
    """Decode fields into `out` (a fresh dict by default).

    Decoding into the dict already there is protobuf's merge rule for a message field seen
    twice: its fields overwrite (a later zero clears), repeated fields and maps extend. An inline
    message decodes into its parent's dict the same way.
    """
    if depth > _MAX_DEPTH:
        raise _fail(pos, f"message {msg} at {path}", f"nested deeper than {_MAX_DEPTH} messages")
    fields = SCHEMA[msg]
    out = {} if out is None else out
    in_msg = f"message {msg} at {path}" if path else f"message {msg}"
    while pos < end:
        at = pos
        key, pos = _varint(buf, pos, end, in_msg)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _fail(at, in_msg, "field number 0 is not allowed")
        field = fields.get(number)
        if field is None:
            pos = _skip(buf, pos, end, wire_type, number, at, in_msg, depth)
            continue
        sub = f"{path}.{field.name}" if path and field.name else (field.name or path)
        where = f"{in_msg}, field {number} ({field.name or field.type})"
        if field.map:
            if wire_type != LEN:
                raise _fail(at, where, f"expected a map entry, got wire type {wire_type}")
            start, pos = _length(buf, pos, end, where)
            k, v = _map_entry(buf, start, pos, field, sub, depth + 1)
            out.setdefault(field.name, {})[k] = v
        elif field.scalar:
            if field.repeated and wire_type == LEN and field.type not in ("string", "bytes"):
                start, pos = _length(buf, pos, end, where)  # packed: varints back to back
                items = out.setdefault(field.name, [])
                while start < pos:
                    value, start = _scalar(buf, field.type, VARINT, start, pos, start, where)
                    items.append(value)
                continue
            value, pos = _scalar(buf, field.type, wire_type, pos, end, at, where)
            if field.repeated:
                out.setdefault(field.name, []).append(value)
            elif field.pointer or not _is_zero(value):
                out[field.name] = value
            else:
                out.pop(field.name, None)  # the last one wins, and it is zero
        else:
            if wire_type != LEN:
                raise _fail(at, where, f"expected an embedded {field.type} message, got wire "
                                       f"type {wire_type}")
            start, pos = _length(buf, pos, end, where)
            if field.repeated:
                items = out.setdefault(field.name, [])
                items.append(_decode_value(buf, start, pos, field.type, f"{sub}[{len(items)}]",
                                           depth))
            elif field.inline:
                _decode_message(buf, start, pos, field.type, sub, depth + 1, out)
            elif field.type in _CONVERT:
                value = _decode_value(buf, start, pos, field.type, sub, depth)
                if value is _OMIT:
                    out.pop(field.name, None)
                else:
                    out[field.name] = value
            else:
                into = out.get(field.name)
                if not isinstance(into, dict):
                    into = out[field.name] = {}
                _decode_message(buf, start, pos, field.type, sub, depth + 1, into)
    return out


def _decode_value(buf: bytes, start: int, end: int, msg: str, path: str, depth: int):
    value = _decode_message(buf, start, end, msg, path, depth + 1)
    convert = _CONVERT.get(msg)
    if convert is None:
        return value
    try:
        return convert(value)
    except ValueError as exc:
        raise _fail(start, f"message {msg} at {path}", str(exc)) from None


def _map_entry(buf: bytes, pos: int, end: int, field: Field, path: str, depth: int):
    """map<string, V> is a repeated message {key = 1; value = 2}; absent parts are zero."""
    key, value = "", None
    where = f"map entry of {path}"
    while pos < end:
        at = pos
        tag, pos = _varint(buf, pos, end, where)
        number, wire_type = tag >> 3, tag & 7
        if number == 1:
            key, pos = _scalar(buf, "string", wire_type, pos, end, at, where)
        elif number == 2 and field.scalar:
            value, pos = _scalar(buf, field.type, wire_type, pos, end, at, where)
        elif number == 2:
            if wire_type != LEN:
                raise _fail(at, where, f"expected an embedded {field.type} message, got wire "
                                       f"type {wire_type}")
            start, pos = _length(buf, pos, end, where)
            value = _decode_value(buf, start, pos, field.type, f"{path}[{key!r}]", depth)
        else:
            pos = _skip(buf, pos, end, wire_type, number, at, where, depth)
    if value is None:  # Go's zero value: "", 0, false, Quantity "0", an empty struct
        convert = _CONVERT.get(field.type)
        value = _ZERO[field.type] if field.scalar else convert({}) if convert else {}
    return key, value


_ZERO = {"string": "", "bytes": "", "bool": False, "int32": 0, "int64": 0}


def _int_or_string(d: dict):
    # intstr.Type: 0 = Int, 1 = String.
    return d.get("strVal", "") if d.get("type", 0) == 1 else d.get("intVal", 0)


def _quantity(d: dict) -> str:
    return d.get("string") or "0"  # a zero Quantity is "0" in JSON


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _timestamp(d: dict, micro: bool):
    seconds, nanos = d.get("seconds", 0), d.get("nanos", 0)
    if seconds == 0 and nanos == 0:
        return _OMIT  # Go's zero Time is sent as an empty message; JSON says null
    if not 0 <= nanos < 1_000_000_000:
        raise ValueError(f"nanos {nanos} is out of range")
    try:
        t = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ValueError(f"seconds {seconds} is out of range") from None
    if micro:  # metav1.RFC3339Micro
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")  # metav1.Time drops sub-second precision


def _fields_v1(d: dict):
    raw = base64.b64decode(d.get("Raw", ""))
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise ValueError("fieldsV1 is not JSON") from None


_CONVERT = {
    "IntOrString": _int_or_string,
    "Quantity": _quantity,
    "Time": lambda d: _timestamp(d, micro=False),
    "MicroTime": lambda d: _timestamp(d, micro=True),
    "FieldsV1": _fields_v1,
}


# --- the envelope ---------------------------------------------------------------------------

def _envelope(body: bytes) -> tuple[str, str, tuple[int, int], str, str]:
    """runtime.Unknown: (apiVersion, kind, raw span, contentEncoding, contentType)."""
    api_version = kind = encoding = content_type = ""
    raw = (len(body), len(body))
    pos, end, where = len(MAGIC), len(body), "message runtime.Unknown"
    while pos < end:
        at = pos
        key, pos = _varint(body, pos, end, where)
        number, wire_type = key >> 3, key & 7
        if number in (1, 2, 3, 4) and wire_type != LEN:
            raise _fail(at, where, f"field {number} must be length-delimited, got wire type "
                                   f"{wire_type}")
        if number == 1:
            start, pos = _length(body, pos, end, where)
            meta = _decode_message(body, start, pos, "_TypeMeta", "typeMeta", 0)
            api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
        elif number == 2:
            raw = _length(body, pos, end, where)
            pos = raw[1]
        elif number in (3, 4):
            value, pos = _scalar(body, "string", wire_type, pos, end, at, where)
            if number == 3:
                encoding = value
            else:
                content_type = value
        else:
            pos = _skip(body, pos, end, wire_type, number, at, where, 0)
    return api_version, kind, raw, encoding, content_type


def message_for(api_version: str, kind: str) -> str | None:
    if kind == "DeleteOptions":
        return "DeleteOptions"
    return KINDS.get((api_version, kind))


def decode_protobuf_object(body: bytes) -> dict:
    """A Kubernetes protobuf body as the dict its JSON encoding would give."""
    if not body.startswith(MAGIC):
        raise ProtobufError(f"invalid protobuf body at byte 0: it does not start with the "
                            f"Kubernetes magic number {MAGIC!r} (got {bytes(body[:4])!r})")
    api_version, kind, (start, end), encoding, content_type = _envelope(body)
    if not kind or not api_version:
        raise ProtobufError("invalid protobuf body: the runtime.Unknown envelope names no "
                            f"apiVersion and kind (got apiVersion={api_version!r}, "
                            f"kind={kind!r})")
    if encoding:
        raise ProtobufError(f"protobuf body with contentEncoding {encoding!r} is not "
                            f"supported; send it unencoded")
    if content_type not in ("", CONTENT_TYPE):
        raise ProtobufError(f"the protobuf envelope carries contentType {content_type!r}; "
                            f"only {CONTENT_TYPE} objects can be decoded")
    msg = message_for(api_version, kind)
    if msg is None:
        raise ProtobufError(f"cannot decode a {kind} in {api_version} from protobuf: meshnet "
                            f"serves no {kind} in {api_version}; send it as application/json")
    obj = _decode_message(body, start, end, msg, "", 0)
    return {"kind": kind, "apiVersion": api_version, **obj}
