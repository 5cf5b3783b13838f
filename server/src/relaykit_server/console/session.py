"""Who is signed in to the console, and the headers every console page carries.

:class:`ConsoleMiddleware` sits on the console's routes (as the bearer middleware sits on
``/api/v1``): it reads the session cookie, looks the session up (:mod:`relaykit.sessions`:
the token it was opened with must still be valid) and puts it in ``scope["user"]``, or
``None``; the pages decide what a signed-out browser gets (the sign-in page). It sets the
request's actor (the token's id) and tenant, so what the console changes is audited exactly
as the API's changes are. And it adds to every answer:

* ``Content-Security-Policy``: scripts, styles, images and fetches from this origin only,
  no inline script or style, no framing, forms post only here;
* ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin`` (not ``no-referrer``: it would make the browser send
  ``Origin: null`` on its own forms), ``Cache-Control: no-store`` (pages show tenant data).
"""

from __future__ import annotations

from collections.abc import Iterable

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from relaykit.context import ACTOR, INTEGRATION_ID, TENANT_ID
from relaykit.pagination import is_id
from relaykit.sessions import ConsoleSession
from relaykit_server.state import services_of

#: The session cookie's name.
SESSION_COOKIE = "relaykit_session"
#: The sign-in form's own CSRF cookie (double submit: there is no session yet).
SIGN_IN_COOKIE = "relaykit_sign_in"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
_SET_HERE = frozenset(name for name, _ in SECURITY_HEADERS)


def cookie(scope: Scope, name: str) -> str | None:
    """The value of the request's cookie ``name`` (the first one sent), if any. Every reader
    of the console's cookies uses this, so a request carrying two of one name (a cookie
    tossed in by a sibling domain) is read the same way everywhere."""
    wanted = name.encode()
    for header, value in scope["headers"]:
        if header != b"cookie":
            continue
        for part in value.split(b";"):
            key, sep, found = part.strip().partition(b"=")
            if sep and key == wanted:
                return found.strip().strip(b'"').decode("latin-1")
    return None


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer of what it wraps (the console's pages
    and its static files), replacing any the app set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": with_security_headers(message.get("headers", []))}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_security_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(name, value) for name, value in headers if name.lower() not in _SET_HERE]
    return [*kept, *SECURITY_HEADERS]


class ConsoleMiddleware:
    """The session of the request, if any, in ``scope["user"]`` (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = services_of(scope["app"])
        with services.request_scope():
            session = await services.sessions.find(cookie(scope, SESSION_COOKIE))
            if session is not None:
                ACTOR.set(session.token_id)
                TENANT_ID.set(session.tenant_id)
                integration_id = scope["path_params"].get("integration_id")
                if integration_id is not None and is_id(integration_id):
                    INTEGRATION_ID.set(integration_id)
            scope["user"] = session
            scope["auth"] = None
            await self.app(scope, receive, send)


def session_of(scope_user: object) -> ConsoleSession | None:
    return scope_user if isinstance(scope_user, ConsoleSession) else None
