"""Prometheus metrics of the operator (names are part of the chart's dashboard contract)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "kubetune_reconcile_total", "Reconciles by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "kubetune_reconcile_duration_seconds",
    "Wall time of one reconcile.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RUNS = Gauge("kubetune_runs", "FineTuneJobs by the phase of their current run.", ["phase"])
RUN_SECONDS = Histogram(
    "kubetune_run_duration_seconds",
    "Duration of finished runs, from Job creation to completion.",
    ["phase"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 172800),
)
API_REQUESTS = Counter(
    "kubetune_api_requests_total", "Kubernetes API write/read calls made by reconciles.", ["kind"]
)
STORE_REQUESTS = Counter(
    "kubetune_objectstore_requests_total", "Object-store reads made by reconciles.", ["kind"]
)
WORKQUEUE_DEPTH = Gauge("kubetune_workqueue_depth", "FineTuneJobs waiting for a reconcile worker.")
