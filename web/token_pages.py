"""API tokens, managed by their owner in the workspace's settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.identity.tokens import TokenError, create_api_token, revoke_api_token, tokens_of
from kith.web.auth_pages import client_info
from kith.web.forms import form_str, read_form, render


async def token_list(request: Request) -> Response:
    caller = request.state.caller
    context = {"tokens": await tokens_of(caller.tenant.id, caller.identity.id), "new_token": None, "error": ""}
    if request.method == "GET":
        return render(request, "tokens.html", context)
    form = await read_form(request)
    try:
        _, raw = await create_api_token(
            tenant_id=caller.tenant.id, identity_id=caller.identity.id, name=form_str(form, "name"),
            client=client_info(request),
        )
    except TokenError as exc:
        context["error"] = str(exc)
        return render(request, "tokens.html", context, status=422)
    context["new_token"] = raw
    context["tokens"] = await tokens_of(caller.tenant.id, caller.identity.id)
    return render(request, "tokens.html", context, status=201)


async def token_revoke(request: Request) -> Response:
    caller = request.state.caller
    await read_form(request)
    try:
        token_id = int(request.path_params["token_id"])
    except ValueError:
        token_id = 0
    await revoke_api_token(tenant_id=caller.tenant.id, identity_id=caller.identity.id, token_id=token_id,
                           client=client_info(request))
    return RedirectResponse(f"/t/{caller.tenant.slug}/settings/tokens", status_code=303)


routes = [
    Route("/t/{slug}/settings/tokens", token_list, methods=["GET", "POST"]),
    Route("/t/{slug}/settings/tokens/{token_id}/revoke", token_revoke, methods=["POST"]),
]
