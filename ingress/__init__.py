"""meshnet-ingress: HTTP/HTTPS ingress controller (host/path routing, default backends, TLS by SNI). See docs/ingress.md."""
