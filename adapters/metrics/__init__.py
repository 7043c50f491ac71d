"""GPU utilisation sources behind core.metrics.GpuMetrics: Prometheus (DCGM exporter) and NVML."""
