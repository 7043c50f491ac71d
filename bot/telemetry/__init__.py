"""serve's operational surface: Prometheus /metrics and the /healthz and /readyz probes."""
