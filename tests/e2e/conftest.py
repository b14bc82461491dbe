"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture
def admin(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client with the admin key as a Bearer token."""
    with httpx.Client(
        base_url=f"{live_server.url}/admin/v1",
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        timeout=30,
    ) as client:
        yield client
