"""`meshctl up`: a single-node cluster on this host (plan, host network, relay, supervisor)."""
