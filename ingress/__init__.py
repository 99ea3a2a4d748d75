"""Ingress controller (a later issue)."""
