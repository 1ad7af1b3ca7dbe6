"""POST /webhooks/stripe: Stripe's deliveries. No session, no CSRF: the signature is the proof."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kith.platform.billing.webhooks import WebhookRejected, receive
from kith.platform.observability import get_logger

log = get_logger("kith.web")

# Stripe's events are a few KB; a larger body is not one of them.
MAX_BODY_BYTES = 512 * 1024


async def stripe_webhook(request: Request) -> Response:
    payload = await request.body()
    if len(payload) > MAX_BODY_BYTES:
        return JSONResponse({"error": "payload too large"}, status_code=413)
    try:
        outcome = await receive(payload, request.headers.get("stripe-signature"))
    except WebhookRejected as exc:
        log.warning("stripe_webhook_rejected", reason=str(exc))
        return JSONResponse({"error": "invalid signature or payload"}, status_code=400)
    # 200 for duplicates and ignored types too: Stripe stops retrying what we have recorded.
    return JSONResponse({"received": outcome.event_id, "outcome": outcome.outcome})


routes = [Route("/webhooks/stripe", stripe_webhook, methods=["POST"])]
