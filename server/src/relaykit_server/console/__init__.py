"""The console: ``/console/``, the browser face of the same API (docs/console.md).

Server-rendered pages (Jinja2 through Litestar's template support), one small stylesheet and
one small script served from this package (no build step, no CDN), forms that work without
the script. :func:`console_routes` gives the app its routes; :func:`template_config` its
templates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from litestar import Request, Response, Router
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from relaykit.errors import RelaykitError
from relaykit_server.console.pages import BASE, ConsolePages, error_page
from relaykit_server.console.session import ConsoleMiddleware, SecurityHeaders

HERE = Path(__file__).parent


def template_config() -> TemplateConfig[Any]:
    """Jinja2 with autoescaping on for every template (every id, provider message and
    metadata value is escaped), and undefined names an error, not a blank."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def is_console_path(path: str) -> bool:
    return path == BASE or path.startswith(f"{BASE}/")


def console_aware(handler: Callable[[Request[Any, Any, Any], Exception], Response[Any]]) -> Any:
    """An app-level exception handler that answers a console path with a page: the 404s and
    405s no console route matched, and failures before one ran, reach only these."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if is_console_path(request.url.path):
            return error_page(request, exc)
        return handler(request, exc)

    return handle


def console_routes() -> list[Router]:
    pages = Router(
        path="/",
        route_handlers=[ConsolePages],
        middleware=[DefineMiddleware(SecurityHeaders), DefineMiddleware(ConsoleMiddleware)],
        exception_handlers={
            RelaykitError: error_page,
            HTTPException: error_page,
            Exception: error_page,
        },
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=f"{BASE}/static",
        directories=[HERE / "static"],
        include_in_schema=False,
        name="console-static",
        middleware=[DefineMiddleware(SecurityHeaders)],
    )
    return [pages, static]
