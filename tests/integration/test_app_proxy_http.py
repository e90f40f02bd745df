"""HttpAppProxy against a real local HTTP server: success, 404, 500, retries, timeout, bad JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from uuid import uuid4

import pytest

from tests.integration.fake_app_proxy_server import Reply, ScriptedServer
from workers.adapters.app_proxy_http import TOKEN_HEADER, HttpAppProxy, HttpAppProxyClient
from workers.config import AppProxySettings
from workers.domain import ScalingGroupProxyTarget
from workers.errors import AppProxyRequestFailed, AppProxyResponseInvalid

TOKEN = "s3cret-token-value"
FAST = AppProxySettings(connect_timeout_s=1.0, read_timeout_s=0.5, retries=2, backoff_s=0.0)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def proxy() -> Iterator[HttpAppProxy]:
    pool = HttpAppProxy(settings=FAST)
    yield pool
    pool.close()


@pytest.fixture
def client(server: ScriptedServer, proxy: HttpAppProxy) -> HttpAppProxyClient:
    return proxy.client_for(ScalingGroupProxyTarget(addr=server.addr, api_token=TOKEN))


def test_create_posts_the_body_with_the_token_and_returns_the_answer(
    server: ScriptedServer, client: HttpAppProxyClient
) -> None:
    endpoint_id = uuid4()
    server.script.then(Reply.json({"endpoint": "http://proxy.local:8080/svc"}))
    answer = client.create_endpoint(endpoint_id, {"service_name": "svc"})
    assert answer == {"endpoint": "http://proxy.local:8080/svc"}
    [seen] = server.script.seen
    assert (seen.method, seen.path) == ("POST", f"/v2/endpoints/{endpoint_id}")
    assert seen.headers[TOKEN_HEADER] == TOKEN
    assert json.loads(seen.body) == {"service_name": "svc"}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body="<html>not json</html>"),
        Reply.json({"endpoint": None}),
        Reply.json({"endpoint": "not a url"}),
        Reply.json(["endpoint"]),
    ],
)
def test_an_answer_without_a_url_is_invalid(
    server: ScriptedServer, client: HttpAppProxyClient, reply: Reply
) -> None:
    server.script.then(reply)
    with pytest.raises(AppProxyResponseInvalid, match=r"POST http://127\.0\.0\.1"):
        client.create_endpoint(uuid4(), {})


def test_delete_succeeds_on_2xx_and_on_404(
    server: ScriptedServer, client: HttpAppProxyClient
) -> None:
    server.script.then(Reply(status=204), Reply(status=404, body='{"error": "gone"}'))
    client.delete_endpoint(uuid4())
    client.delete_endpoint(uuid4())
    assert [s.method for s in server.script.seen] == ["DELETE", "DELETE"]


def test_a_500_is_an_error_that_names_the_status_and_hides_the_token(
    server: ScriptedServer, client: HttpAppProxyClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.script.then(Reply(status=500, body=f"token {TOKEN} rejected"))
    with caplog.at_level(logging.DEBUG), pytest.raises(AppProxyRequestFailed) as failure:
        client.delete_endpoint(uuid4())
    assert failure.value.status == 500
    assert failure.value.temporary
    assert "HTTP 500" in str(failure.value)
    assert TOKEN not in str(failure.value)
    assert TOKEN not in caplog.text
    assert len(server.script.seen) == 1, "a plain 500 is not retried"


def test_a_4xx_other_than_404_is_a_permanent_error(
    server: ScriptedServer, client: HttpAppProxyClient
) -> None:
    server.script.then(Reply(status=403, body="bad token"))
    with pytest.raises(AppProxyRequestFailed) as failure:
        client.create_endpoint(uuid4(), {})
    assert (failure.value.status, failure.value.temporary) == (403, False)


def test_502_503_504_are_retried(server: ScriptedServer, client: HttpAppProxyClient) -> None:
    server.script.then(
        Reply(status=503), Reply(status=502), Reply.json({"endpoint": "https://svc.example"})
    )
    assert client.create_endpoint(uuid4(), {})["endpoint"] == "https://svc.example"
    assert len(server.script.seen) == 3


def test_retries_give_up_with_the_last_status(
    server: ScriptedServer, client: HttpAppProxyClient
) -> None:
    server.script.then(Reply(status=504), Reply(status=504), Reply(status=504))
    with pytest.raises(AppProxyRequestFailed, match="HTTP 504"):
        client.delete_endpoint(uuid4())
    assert len(server.script.seen) == 3  # the first try and FAST.retries more


def test_a_slow_answer_times_out_without_a_retry(
    server: ScriptedServer, client: HttpAppProxyClient
) -> None:
    server.script.then(Reply(status=200, body="{}", delay_s=1.5))
    with pytest.raises(AppProxyRequestFailed, match=r"no answer: .*ReadTimeout") as failure:
        client.create_endpoint(uuid4(), {})
    assert failure.value.temporary
    assert len(server.script.seen) == 1


def test_a_refused_connection_is_a_temporary_error(proxy: HttpAppProxy) -> None:
    client = proxy.client_for(ScalingGroupProxyTarget(addr="http://127.0.0.1:1", api_token=TOKEN))
    with pytest.raises(AppProxyRequestFailed, match="no answer") as failure:
        client.create_endpoint(uuid4(), {})
    assert failure.value.temporary
    assert TOKEN not in str(failure.value)


def test_one_pooled_client_per_proxy_address(proxy: HttpAppProxy, server: ScriptedServer) -> None:
    target = ScalingGroupProxyTarget(addr=server.addr, api_token=TOKEN)
    same = ScalingGroupProxyTarget(addr=server.addr + "/", api_token=TOKEN)
    other = ScalingGroupProxyTarget(addr="http://127.0.0.1:1", api_token=TOKEN)
    assert proxy.client_for(target) is proxy.client_for(same)
    assert proxy.client_for(target) is not proxy.client_for(other)
    assert TOKEN not in repr(target)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_naming_its_status_and_the_token_never_follows_it(
    server: ScriptedServer, client: HttpAppProxyClient, status: int
) -> None:
    with ScriptedServer() as elsewhere:
        elsewhere.script.then(Reply.json({"endpoint": "http://attacker.example/svc"}))
        location = f"{elsewhere.addr}/v2/endpoints/x"
        server.script.then(Reply(status=status, headers=(("Location", location),)))
        with pytest.raises(AppProxyRequestFailed, match=f"HTTP {status}: redirects are not"):
            client.create_endpoint(uuid4(), {})
        assert elsewhere.script.seen == []


def test_a_token_straddling_the_excerpt_cut_is_redacted_whole(
    server: ScriptedServer, client: HttpAppProxyClient
) -> None:
    server.script.then(Reply(status=500, body="x" * 190 + TOKEN + "y" * 100))
    with pytest.raises(AppProxyRequestFailed) as failure:
        client.delete_endpoint(uuid4())
    assert _no_piece_of(TOKEN, str(failure.value))


def test_a_token_with_a_trailing_newline_never_reaches_a_message_in_any_form(
    server: ScriptedServer, proxy: HttpAppProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """requests raises InvalidHeader quoting repr(token); that reached history rows once."""
    client = proxy.client_for(ScalingGroupProxyTarget(addr=server.addr, api_token=TOKEN + "\n"))
    with caplog.at_level(logging.DEBUG), pytest.raises(AppProxyRequestFailed) as failure:
        client.create_endpoint(uuid4(), {})
    assert "InvalidHeader" in str(failure.value)
    assert failure.value.__cause__ is None
    assert failure.value.__suppress_context__
    assert _no_piece_of(TOKEN, str(failure.value))
    assert _no_piece_of(TOKEN, caplog.text)


def _no_piece_of(secret: str, text: str, piece: int = 6) -> bool:
    """No run of `piece` characters of `secret` is in `text`."""
    return not any(secret[i : i + piece] in text for i in range(len(secret) - piece + 1))
