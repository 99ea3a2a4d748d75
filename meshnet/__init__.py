"""meshnet: the networking half of Kubernetes."""
__version__ = "0.1.0"
