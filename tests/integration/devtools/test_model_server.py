"""The sample model server over real HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.sample_servers import SampleServer
from workers.devtools.engine import Engine, EngineConfig
from workers.devtools.model_server import ModelState, make_server
from workers.devtools.processes import wait_for
from workers.devtools.throwaway_servers import free_port


def test_it_answers_reports_metrics_and_can_be_told_to_fail_its_health_check(
    sample_server: Callable[[str], SampleServer],
) -> None:
    server = sample_server("demo")
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 200
    answer = requests.post(f"{server.url}/v1/completions", json={"prompt": "a b c"}, timeout=2)
    assert answer.json() == {
        "model": "demo", "choices": [{"index": 0, "text": "echo: c b a"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 16, "total_tokens": 18,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }  # fmt: skip
    metrics = requests.get(f"{server.url}/metrics", timeout=2).text
    assert "model_requests_total 1\n" in metrics
    assert "model_requests_in_flight 0\n" in metrics
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 503
    requests.post(f"{server.url}/admin/recover", timeout=2)
    assert requests.get(f"{server.url}/health", timeout=2).status_code == 200
    bad = requests.post(f"{server.url}/v1/completions", data="not json", timeout=2)
    assert bad.status_code == 400


def test_on_sigterm_it_finishes_requests_in_flight_refuses_new_ones_and_exits_0(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "workers.reference.model_server", f"--port={port}"]
    server = subprocess.Popen([*argv, "--latency-s=1.5"], cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/health"), timeout_s=20, what="the server to listen")
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(
                requests.post, f"{url}/v1/completions", json={"prompt": "a b"}, timeout=10
            )
            time.sleep(0.5)  # the completion is being computed
            server.send_signal(signal.SIGTERM)
            assert in_flight.result().status_code == 200
        assert server.wait(timeout=10) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=2)
    finally:
        server.kill()
        server.wait()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_every_answer_says_which_revision_answered() -> None:
    state = ModelState("demo", revision=3)
    assert state.complete("a")["revision"] == 3
    assert state.health() == {"healthy": True, "loaded": True, "revision": 3}
    assert "revision" not in ModelState("demo").complete("a")


def test_while_it_loads_its_port_is_open_but_health_and_completions_are_503(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "workers.devtools.model_server", f"--port={port}"]
    server = subprocess.Popen([*argv, "--startup-s=3"], cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_for(lambda: _status(f"{url}/health"), lambda s: s != 0, timeout_s=20,
                          what="the port open")  # fmt: skip
        loading = requests.post(f"{url}/v1/completions", json={"prompt": "a"}, timeout=2)
        assert (health, loading.status_code) == (503, 503)
        assert loading.json() == {"error": "the model is still loading"}
        wait_for(lambda: _status(f"{url}/health"), lambda s: s == 200, timeout_s=20,
                 what="the model loaded")  # fmt: skip
        done = requests.post(f"{url}/v1/completions", json={"prompt": "a"}, timeout=2)
        assert done.status_code == 200
    finally:
        server.kill()
        server.wait()


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=1).status_code
    except requests.RequestException:
        return 0


def test_an_error_rate_fails_exactly_that_share_of_completions_evenly() -> None:
    half, none, every = (
        ModelState("h", error_rate=0.5),
        ModelState("n"),
        ModelState("e", error_rate=1.0),
    )
    assert [half.next_fails() for _ in range(6)] == [False, True] * 3
    assert not any(none.next_fails() for _ in range(10))
    assert all(every.next_fails() for _ in range(10))
    tenth = ModelState("t", error_rate=0.1)
    assert sum(tenth.next_fails() for _ in range(100)) == 10


def test_a_reset_rate_resets_that_share_of_completions_connections() -> None:
    state = ModelState("m", reset_rate=0.5)
    server = make_server("127.0.0.1", 0, state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)  # fmt: skip
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/completions"
    try:
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(requests.post(url, json={"prompt": "a"}, timeout=5).status_code)
            except requests.ConnectionError:
                outcomes.append(0)  # reset: no answer
        assert outcomes == [200, 0, 200, 0]
        assert requests.get(url.replace("/v1/completions", "/health"), timeout=5).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def engine_server() -> Iterator[str]:
    """The sample model with its simulated engine: a cache of 8 blocks of 64 characters,
    two requests running at once, 1 ms per uncached prompt token, 2 ms per output token."""
    state = ModelState("engine")
    state.engine = Engine(EngineConfig(max_running=2, kv_blocks=8, block_chars=64,
                                       prefill_s_per_token=0.001, decode_s_per_token=0.002,
                                       output_tokens=10))  # fmt: skip
    server = make_server("127.0.0.1", free_port(), state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_repeated_prefix_is_cached_and_said_so_in_the_usage_and_the_metrics(
    engine_server: str,
) -> None:
    shared = "s" * 256  # four blocks
    first = requests.post(f"{engine_server}/v1/completions",
                          json={"prompt": shared + " one"}, timeout=5).json()  # fmt: skip
    again = requests.post(f"{engine_server}/v1/completions",
                          json={"prompt": shared + " two"}, timeout=5).json()  # fmt: skip
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == 64  # 4 blocks x 16
    other = "t" * 1024  # 16 blocks: more than the cache holds; the shared prefix goes
    requests.post(f"{engine_server}/v1/completions", json={"prompt": other}, timeout=5)
    evicted = requests.post(f"{engine_server}/v1/completions",
                            json={"prompt": shared + " three"}, timeout=5).json()  # fmt: skip
    assert evicted["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    metrics = requests.get(f"{engine_server}/metrics", timeout=2).text
    assert "vllm:prefix_cache_hits_total 64\n" in metrics
    assert "vllm:kv_cache_usage_perc 1.0000\n" in metrics


def test_requests_beyond_the_running_limit_wait_and_the_metrics_say_how_many(
    engine_server: str,
) -> None:
    long_answer = {"prompt": "x", "max_tokens": 400}  # 0.8 s of decoding each
    with ThreadPoolExecutor(max_workers=4) as pool:
        sent = [pool.submit(requests.post, f"{engine_server}/v1/completions", json=long_answer,
                            timeout=10) for _ in range(4)]  # fmt: skip
        metrics = wait_for(lambda: requests.get(f"{engine_server}/metrics", timeout=2).text,
                           lambda text: "vllm:num_requests_waiting 2\n" in text, timeout_s=5,
                           what="two waiting")  # fmt: skip
        assert "vllm:num_requests_running 2\n" in metrics
        assert [f.result().status_code for f in sent] == [200] * 4


def test_chat_is_rendered_and_a_stream_sends_its_first_token_before_the_rest(
    engine_server: str,
) -> None:
    chat = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hello there"}],
            "max_tokens": 200, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    started = time.monotonic()
    with requests.post(f"{engine_server}/v1/chat/completions", json=chat, stream=True,
                       timeout=10) as answer:  # fmt: skip
        lines = answer.iter_lines(chunk_size=1)  # each byte as it comes
        first = next(line for line in lines if line)
        first_after_s = time.monotonic() - started
        rest = [line for line in lines if line]
    assert answer.headers["Content-Type"] == "text/event-stream"
    assert first.startswith(b"data: ")
    assert first_after_s < 0.3  # decoding 200 tokens takes 0.4 s: the first came before
    assert rest[-1] == b"data: [DONE]"
    usage = json.loads(rest[-2][len(b"data: ") :])["usage"]
    rendered = len("system: be brief\nuser: hello there\n")
    assert usage["prompt_tokens"] == -(-rendered // 4)
