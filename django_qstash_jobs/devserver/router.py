"""Method + path-pattern routing with 404 and 405 answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ApiError
from .httpd import Request, Response

Handler = Callable[[Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    """One route: allowed methods, a full-match regex on the raw path, and its handler."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Routes are tried in the order they were added."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for space-separated ``methods`` and the regex ``pattern``."""
        self._routes.append(Route(frozenset(methods.split()), re.compile(pattern), handler))

    def dispatch(self, request: Request) -> Response:
        """Call the first matching handler; raise 405 or 404 when there is none."""
        path_matched = False
        for route in self._routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if request.method in route.methods:
                return route.handler(request, match.groupdict())
            path_matched = True
        if path_matched:
            raise ApiError(405, f"method {request.method} not allowed on {request.path}")
        raise ApiError(404, f"not found: {request.path}")
