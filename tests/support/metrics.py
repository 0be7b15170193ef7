"""Reading a server's /metrics in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(body: str) -> Samples:
    """Every sample of a Prometheus text body, by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (e.g. tokens of one kind, any model)."""
    wanted = set(labels.items())
    return sum(value for (n, have), value in found.items() if n == name and wanted <= set(have))
