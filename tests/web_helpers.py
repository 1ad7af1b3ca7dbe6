"""Helpers for talking to the real app in-process (httpx over ASGI)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from kith.web.app import create_app

_app = None


def app() -> Any:
    global _app
    if _app is None:
        _app = create_app()
    return _app


def client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://testserver", **kwargs)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


async def form_post(c: httpx.AsyncClient, page: str, data: dict[str, str], action: str | None = None) -> httpx.Response:
    """GET a page, then POST its form with the page's CSRF token, like a browser."""
    got = await c.get(page)
    assert got.status_code == 200, (page, got.status_code)
    return await c.post(action or page, data={**data, "csrf_token": csrf_from(got.text)})


async def login(c: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await form_post(c, "/login", {"email": email, "password": password}, "/login")


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body["error"]["status"] == status
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]
