"""serve.py's /metrics in Prometheus' text format (prometheus-client): requests and their
latency by path and status code, the classes predicted, the confidences, the version served.
One registry per server app, so two apps in one process (tests) keep their own counts."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, generate_latest


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("serve_requests", "HTTP requests answered, by path and status code",
                                ["path", "code"], registry=self.registry)
        self.latency = Histogram("serve_request_seconds", "Time to answer a request, by path", ["path"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.classes = Counter("serve_predicted", "Predictions answered, by class", ["class_name"],
                               registry=self.registry)
        self.confidence = Histogram("serve_confidence", "Confidence of the predicted class",
                                    buckets=(0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0), registry=self.registry)
        self.model = Info("serve_model", "The model version served", registry=self.registry)
        self.batch = Histogram("serve_batch_size", "Images per model call (micro-batching)",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)

    def observe(self, path: str, code: int, seconds: float) -> None:
        known = path if path in ("/predict", "/health", "/metrics") else "other"  # no label per unknown URL
        self.requests.labels(known, str(code)).inc()
        self.latency.labels(known).observe(seconds)

    def predicted(self, class_name: str, confidence: float) -> None:
        self.classes.labels(class_name).inc()
        self.confidence.observe(confidence)

    def serving(self, ref: str) -> None:
        self.model.info({"version": ref})

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
