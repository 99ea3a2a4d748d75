"""Cluster DNS (a later issue)."""
