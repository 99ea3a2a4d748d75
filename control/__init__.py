"""Control plane: Kubernetes-compatible API server, storage, controllers."""
