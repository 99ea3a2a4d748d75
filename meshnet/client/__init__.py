"""Client side of the Kubernetes API: kubeconfig handling, a REST client, discovery."""

from .errors import ApiError, ClientError, ConfigError, ConnectionFailed
from .kubeconfig import ClusterConnection, Kubeconfig
from .rest import RestClient, resource_path

__all__ = [
    "ApiError", "ClientError", "ConfigError", "ConnectionFailed",
    "ClusterConnection", "Kubeconfig", "RestClient", "resource_path",
]
