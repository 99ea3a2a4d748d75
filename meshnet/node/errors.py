"""Errors of the node agent.

`AgentError` is a DaemonError (printed without a traceback). The pod-level errors carry the
Kubernetes waiting reason they turn into, so the pod worker records them on the container
status instead of crashing: a bad pod is a status, never an exception that stops the agent.
"""

from __future__ import annotations

from meshnet.daemon import DaemonError


class AgentError(DaemonError):
    """A start-up or run-time problem of the agent itself (flags, kubeconfig, network)."""


class PodError(Exception):
    """A problem with one pod; `reason` is the container waiting reason it shows as."""

    reason = "ContainerCreating"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(PodError):
    """A ConfigMap/Secret/field the pod refers to is missing (CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"


class ImagePullError(PodError):
    """The image is neither built in nor mapped to a host program."""

    reason = "ErrImagePull"


class NetworkError(PodError):
    """Setting up the pod's network failed (no podCIDR yet, pool exhausted, netlink error)."""

    reason = "ContainerCreating"


class PoolExhausted(NetworkError):
    pass
