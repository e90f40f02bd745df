"""The proxy's Grafana dashboard asks only for metrics the proxy exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from workers.standalone.proxy import counting

DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "modelfleet-proxy.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def test_every_metric_the_proxy_dashboard_asks_for_is_one_the_proxy_exports() -> None:
    assert counting.REQUESTS  # the proxy's metrics are registered on import
    exported = {
        f"{family.name}{suffix}"
        for family in REGISTRY.collect()
        if family.name.startswith(("modelfleet_proxy_", "modelfleet_cold_start"))
        for suffix in SUFFIXES.get(family.type, ("",))
    }
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"modelfleet_\w+", target["expr"])}  # fmt: skip
    assert len(asked) == 7
    assert asked <= exported, asked - exported
