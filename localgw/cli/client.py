"""A tiny HTTP client for commands that talk to a running server (`ps`)."""

from __future__ import annotations

import httpx

from localgw.errors import LocalgwError, ServiceUnavailable


def base_url(url: str) -> str:
    """Accept `http://host:port`, with or without a trailing `/v1`."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def get_json(url: str, path: str, api_key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(base_url(url) + path, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"no localgw server answers at {url} ({exc}); start one with "
                                 "`localgw serve`") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise LocalgwError(f"{url}{path}: HTTP {response.status_code}: {message}")
    return response.json()
