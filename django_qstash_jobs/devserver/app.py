"""The request entry point: authentication, then routing to the API handlers."""

from __future__ import annotations

import hmac

from . import api_admin, api_dlq, api_messages, api_schedules
from .context import Context
from .errors import ApiError
from .httpd import App, Request, Response
from .router import Router


def _token(request: Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        return None
    return request.param("qstash_token")


def build_app(ctx: Context, token: str) -> App:
    """Return the callable the HTTP server hands every request to."""
    router = Router()
    api_messages.register(router, ctx)
    api_schedules.register(router, ctx)
    api_dlq.register(router, ctx)
    api_admin.register(router, ctx)
    expected = token.encode("utf-8")

    def app(request: Request) -> Response:
        given = _token(request)
        if given is None:
            raise ApiError(401, "missing token: use 'Authorization: Bearer <QSTASH_TOKEN>'")
        if not hmac.compare_digest(given.encode("utf-8"), expected):
            raise ApiError(401, "invalid token")
        return router.dispatch(request)

    return app
