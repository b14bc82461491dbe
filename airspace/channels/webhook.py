"""Webhook steps: an HTTP call with the person and the trigger, retried with the same key."""

from __future__ import annotations

import httpx

from airspace.channels.base import DeliveryResult, OutboundMessage

TIMEOUT_SECONDS = 10.0


class WebhookChannel:
    """Calls the step's URL; 2xx is delivered, 5xx / 429 / network errors are retried."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client

    @property
    def client(self) -> httpx.Client:
        # Made on first use: setting up TLS costs tens of milliseconds per worker.
        if self._client is None:
            self._client = httpx.Client(timeout=TIMEOUT_SECONDS)
        return self._client

    def deliver(self, message: OutboundMessage) -> DeliveryResult:
        method = str(message.body.get("method", "POST"))
        payload = message.body.get("json")
        try:
            response = self.client.request(
                method,
                message.address,
                json=payload if method != "GET" else None,
                headers={"Idempotency-Key": message.idempotency_key},
            )
        except httpx.HTTPError as error:
            return DeliveryResult(False, f"{type(error).__name__}: {error}"[:300], retry=True)
        if response.is_success:
            return DeliveryResult(True, f"HTTP {response.status_code}")
        retry = response.status_code >= 500 or response.status_code == 429
        return DeliveryResult(False, f"HTTP {response.status_code}", retry=retry)
