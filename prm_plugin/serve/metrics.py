"""``/metrics``: Prometheus counters of one server (its own registry, so several servers
in one process, as in tests, never mix their figures)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from prm_plugin.search import Cost

#: Request latencies span a cached health check to a long search.
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """The server's counters.

    Args:
        depth: reads the number of problems queued or in the running search.
    """

    def __init__(self, depth: Callable[[], int]) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("prm_serve_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.problems = Counter("prm_serve_problems_searched", "Problems whose search finished", registry=r)
        self.failures = Counter("prm_serve_search_failures", "Problems whose search raised", registry=r)
        self.policy_tokens = Counter("prm_serve_policy_tokens",
                                     "Policy tokens run by searches (prefill: prompt side; generated: sampled)",
                                     ["kind"], registry=r)
        self.prm_tokens = Counter("prm_serve_prm_tokens", "Tokens the PRM ran", registry=r)
        self.disconnects = Counter("prm_serve_client_disconnects",
                                   "Requests whose client went away before the answer", registry=r)
        self.queue_depth = Gauge("prm_serve_queue_depth", "Problems queued or in the running search", registry=r)
        self.queue_depth.set_function(lambda: float(depth()))
        self.latency = Histogram("prm_serve_request_latency_seconds", "Latency of search requests, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("prm_serve_batch_size", "Problems per strategy.search call",
                                    buckets=BATCH_BUCKETS, registry=r)

    def searched(self, cost: Cost) -> None:
        """Book one finished search (called on the search thread; counters are thread-safe)."""
        self.problems.inc()
        self.policy_tokens.labels("prefill").inc(cost.policy_prefill_tokens)
        self.policy_tokens.labels("generated").inc(cost.policy_generated_tokens)
        self.prm_tokens.inc(cost.prm_tokens)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
