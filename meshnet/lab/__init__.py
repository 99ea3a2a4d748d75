"""netns-lab: a small multi-node meshnet cluster on one host, built from network namespaces."""
