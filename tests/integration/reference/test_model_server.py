"""The sample model server over real HTTP."""

from __future__ import annotations

from collections.abc import Callable

import requests

from tests.integration.reference.conftest import SampleServer


def test_it_answers_reports_metrics_and_can_be_told_to_fail_its_health_check(
    sample_server: Callable[[str], SampleServer],
) -> None:
    server = sample_server("demo")
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 200
    answer = requests.post(f"{server.url}/v1/completions", json={"prompt": "a b c"}, timeout=2)
    assert answer.json() == {"model": "demo", "choices": [{"index": 0, "text": "echo: c b a"}]}
    metrics = requests.get(f"{server.url}/metrics", timeout=2).text
    assert "model_requests_total 1\n" in metrics
    assert "model_requests_in_flight 0\n" in metrics
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 503
    requests.post(f"{server.url}/admin/recover", timeout=2)
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 200
    bad = requests.post(f"{server.url}/v1/completions", data="not json", timeout=2)
    assert bad.status_code == 400
