"""The app proxy's endpoint API over HTTP (`requests`), one pooled session per proxy address.

`POST {addr}/v2/endpoints/{id}` registers an endpoint and answers with its
public URL in `endpoint`; `DELETE` on the same path unregisters it, and a 404
there means it is already gone. Connection errors and 502/503/504 are retried
with backoff (urllib3 `Retry`); other errors are not. Redirects are never
followed: a 3xx would carry the token to another host, so it is an error.
The API token travels in the `X-BackendAI-Token` header and is kept out of
every log line and message, in every form it can take there (raw, repr,
escaped), redacted before any text is cut short.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from workers.config import AppProxySettings
from workers.domain import ScalingGroupProxyTarget
from workers.errors import AppProxyRequestFailed, AppProxyResponseInvalid

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-BackendAI-Token"
_RETRIED_STATUSES = (502, 503, 504)
_BODY_EXCERPT_CHARS = 200


class HttpAppProxy:
    """Hands out one client per (address, token); each keeps its connection pool."""

    def __init__(self, *, settings: AppProxySettings) -> None:
        self._settings = settings
        self._clients: dict[tuple[str, str], HttpAppProxyClient] = {}

    def client_for(self, target: ScalingGroupProxyTarget) -> HttpAppProxyClient:
        key = (target.addr.rstrip("/"), target.api_token)
        client = self._clients.get(key)
        if client is None:
            client = HttpAppProxyClient(addr=key[0], api_token=key[1], settings=self._settings)
            self._clients[key] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class HttpAppProxyClient:
    def __init__(self, *, addr: str, api_token: str, settings: AppProxySettings) -> None:
        self._addr = addr
        self._token = api_token
        self._timeout = (settings.connect_timeout_s, settings.read_timeout_s)
        self._session = requests.Session()
        self._session.headers[TOKEN_HEADER] = api_token
        retry = Retry(
            total=settings.retries,
            connect=settings.retries,
            read=0,  # the request may have been applied; the phase retries it later instead
            status=settings.retries,
            other=0,
            backoff_factor=settings.backoff_s,
            status_forcelist=_RETRIED_STATUSES,
            allowed_methods=frozenset({"POST", "DELETE"}),
            raise_on_status=False,
        )
        self._session.mount(addr, HTTPAdapter(max_retries=retry))

    def create_endpoint(self, endpoint_id: UUID, body: Mapping[str, Any]) -> dict[str, Any]:
        """Register the endpoint; the answer's `endpoint` is checked to be an http(s) URL."""
        response = self._request("POST", endpoint_id, json=dict(body))
        if not _succeeded(response):
            raise self._failure("POST", endpoint_id, response)
        try:
            answer = response.json()
        except ValueError:
            raise AppProxyResponseInvalid(
                f"POST {self._url(endpoint_id)}: answer is not JSON: {self._excerpt(response)}"
            ) from None
        if not isinstance(answer, dict) or not _is_http_url(answer.get("endpoint")):
            raise AppProxyResponseInvalid(
                f"POST {self._url(endpoint_id)}: answer has no http(s) URL in 'endpoint': "
                f"{self._excerpt(response)}"
            )
        return answer

    def delete_endpoint(self, endpoint_id: UUID) -> None:
        """Unregister the endpoint; 404 means it is already gone, which is success."""
        response = self._request("DELETE", endpoint_id)
        if response.status_code == requests.codes.not_found:
            log.info("app proxy %s: endpoint %s already gone", self._addr, endpoint_id)
            return
        if not _succeeded(response):
            raise self._failure("DELETE", endpoint_id, response)

    def close(self) -> None:
        self._session.close()

    def _request(self, method: str, endpoint_id: UUID, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(
                method,
                self._url(endpoint_id),
                timeout=self._timeout,
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as error:
            # `from None`: the library's exception may quote the token (InvalidHeader).
            raise AppProxyRequestFailed(
                f"{method} {self._url(endpoint_id)}: no answer: "
                f"{self._redacted(type(error).__name__ + ': ' + str(error))}",
                status=None,
            ) from None

    def _failure(
        self, method: str, endpoint_id: UUID, response: requests.Response
    ) -> AppProxyRequestFailed:
        if response.is_redirect or response.is_permanent_redirect:
            return AppProxyRequestFailed(
                f"{method} {self._url(endpoint_id)}: HTTP {response.status_code}: "
                "redirects are not followed (the token would go along)",
                status=response.status_code,
            )
        return AppProxyRequestFailed(
            f"{method} {self._url(endpoint_id)}: HTTP {response.status_code}: "
            f"{self._excerpt(response)}",
            status=response.status_code,
        )

    def _excerpt(self, response: requests.Response) -> str:
        return _excerpt(self._redacted(response.text))

    def _url(self, endpoint_id: UUID) -> str:
        return f"{self._addr}/v2/endpoints/{endpoint_id}"

    def _redacted(self, text: str) -> str:
        return redact(text, self._token)


def redact(text: str, secret: str) -> str:
    """`text` with `secret` replaced in every form a message can carry it.

    Raw, as `repr` or JSON escape it (a newline becomes a backslash and n), and
    its stripped core: a token with a trailing newline reaches messages in any
    of these.
    """
    forms = {secret, secret.strip(), repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    forms |= {secret.encode("unicode_escape").decode("ascii")}
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _succeeded(response: requests.Response) -> bool:
    """2xx only: `response.ok` also holds for a 3xx, which is never followed here."""
    return 200 <= response.status_code < 300


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _BODY_EXCERPT_CHARS:
        return text[:_BODY_EXCERPT_CHARS] + "..."
    return text or "(empty body)"
