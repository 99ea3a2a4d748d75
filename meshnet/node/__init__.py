"""meshnet-agent: the node agent (kubelet's job) — Node registration, pod network, pod runtime.

Modules, one concept each: `registration` (Node + Lease), `ipam` and `netconfig` (pure pod
network plans), `podnet` (pyroute2), `runtime` + `launch` (processes in pod namespaces),
`lifecycle`, `backoff`, `probes` (pod status as a state machine), `envconfig` and `volumes`
(ConfigMaps/Secrets into containers), `podworker` (one pod's life), `server` (logs/exec),
`agent` (wiring) and `main` (flags).
"""
