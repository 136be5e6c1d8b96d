"""Slack incoming webhook (processors.md): ``POST {SLACK_WEBHOOK_URL}`` ``{"text", "blocks"?}`` → 200 ``ok``.

The webhook URL is a secret (it alone authorises posting): it is never logged or recorded in audit.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from integrations.errors import ProcessorConfigurationError, ProcessorDeclined
from integrations.http import Exchange, HttpClient


@dataclass(frozen=True)
class SlackPosted:
    exchange: Exchange


class SlackClient(HttpClient):
    processor = "slack"

    def __init__(self, *, webhook_url: str, connect_timeout: float, read_timeout: float, **kwargs):
        super().__init__(base_url=webhook_url, connect_timeout=connect_timeout, read_timeout=read_timeout, **kwargs)
        self.webhook_url = webhook_url

    def post_message(self, *, text: str, blocks: list | None = None) -> SlackPosted:
        """Post one message. Slack answers 200 ``ok``, or 4xx with a reason (``invalid_payload``...)."""
        if not text or not text.strip():
            raise ValueError("a Slack message needs text")
        body = {"text": text, **({"blocks": blocks} if blocks else {})}
        response, exchange = self._send("POST", "", operation="post_message", json_body=body, url=self.webhook_url,
                                        audit_url="slack:incoming-webhook")
        if response.status_code != 200 or response.text.strip() != "ok":
            reason = response.text.strip()[:100] or f"http_{response.status_code}"
            raise ProcessorDeclined(f"Slack refused the message: {reason}", code=reason, processor=self.processor,
                                    operation="post_message", exchange=exchange)
        return SlackPosted(exchange=exchange)


def slack_client() -> SlackClient:
    if not settings.SLACK_WEBHOOK_URL:
        raise ProcessorConfigurationError("SLACK_WEBHOOK_URL is not set", processor="slack", operation="configure")
    return SlackClient(webhook_url=settings.SLACK_WEBHOOK_URL, connect_timeout=settings.OUTBOUND_CONNECT_TIMEOUT,
                       read_timeout=settings.OUTBOUND_READ_TIMEOUT)
