"""What each field number of a Kubernetes protobuf message means; `protobuf.py` reads by it.

`SCHEMA[message][number]` is a `Field`: the JSON name and type kube-apiserver's JSON encoding of
the same Go field has. The tables below write a field as `"jsonName:type"`; the type defaults to
string. `[]T` is repeated, `{}T` is map<string, T>, a trailing `?` marks a Go pointer (zero
kept), `~T` inlines message T into the parent (`json:",inline"`). Scalars: string bool int32
int64 bytes; anything else names a message in the tables, and `_compile` refuses a name that is
not there, so a typo fails at import, not on the first body that uses it.

Field numbers come from kubernetes' generated.proto files (core/v1, apps/v1, networking/v1,
coordination/v1, meta/v1, util/intstr, api/resource); they never change once released.
Deprecated in-tree volume plugins (gcePersistentDisk, rbd, ...) are left out on purpose; nothing
meshnet runs can use them, and the reader skips field numbers the table does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshnet.api import resources

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
    # Well-known messages with a JSON form of their own (see protobuf._CONVERT).
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
