"""Role-matrix fixtures for the email provider endpoints (GET and PUT /email-provider, POST
/email-provider/check): owners and admins (manage_settings) may; every other role gets 403.

The sample body keeps the platform's email, so an allowed PUT changes nothing a later walk relies
on, and the check (of the platform's email: the dev outbox in tests) reaches no server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SAMPLE_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "EmailProviderIn": lambda: {"kind": "platform"},
}
