"""meshnet-agent: the node agent (kubelet's job) — Node registration, pod network, pod runtime.

Modules, one concept each: `registration` (Node + Lease), `ipam` and `netconfig` (pure pod
network plans), `podnet` + `rtnl` (pyroute2), `runtime`, `spawner`, `zygote` and `launch`
(processes in pod namespaces), `docker_runtime`,
`lifecycle`, `backoff`, `probes` (pod status as a state machine), `envconfig` and `volumes`
(ConfigMaps/Secrets into containers), `podworker` (one pod's life), `server` (logs/exec),
`agent` (wiring) and `main` (flags).
"""
