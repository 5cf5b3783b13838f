"""The console's pages: ``/console/…``, server-rendered, forms that work without JavaScript.

Every page calls the services the API's handlers call (``services.integrations``,
``.routing``, ``.deliveries``, ``.webhooks``, ``.audit``) with the signed-in tenant, so the
API's validation, lifecycle rules and audit trail apply unchanged; a form becomes the API's
own request body (relaykit_server.console.forms). Each change is a POST that answers with a
303 to the page that shows its result (post/redirect/get), or the form again with the API's
messages beside their fields (422).

A POST is taken only with the session's CSRF token in its ``csrf_token`` field, and, when
the browser sends an ``Origin``, only from this server's own host. docs/console.md is the
guide.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from relaykit.errors import ConflictError, NotFoundError, RelaykitError, ValidationError
from relaykit.ledger import ATTEMPT_STATUSES
from relaykit.providers import Provider
from relaykit.sealing import SealError
from relaykit.services import Services
from relaykit.sessions import ConsoleSession
from relaykit.wire import Integration, RoutingRule
from relaykit_server.console import forms
from relaykit_server.console.session import (
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    cookie,
    session_of,
)
from relaykit_server.errors import EXCEPTION_HANDLERS
from relaykit_server.state import services_of

logger = logging.getLogger("relaykit.console")

BASE = "/console"
#: What a ``?done=`` after a redirect says (only these: the URL never carries free text).
NOTICES = {
    "configured": "Integration configured. Its credentials are being verified.",
    "updated": "Integration updated.",
    "unchanged": "Nothing was changed.",
    "activated": "Integration activated.",
    "disabled": "Integration disabled: it is excluded from routing.",
    "deleted": "Integration deleted.",
    "rule-created": "Routing rule created.",
    "rule-updated": "Routing rule updated.",
    "rule-deleted": "Routing rule deleted.",
    "signed-out": "You are signed out.",
}
#: How many of an integration's attempts, webhook events and audit events its page shows.
RECENT = 10
#: Page size of the delivery attempts page.
ATTEMPTS_PER_PAGE = 25
#: The path of the status an integration page polls (answered in JSON, errors too).
STATUS_PATH = re.compile(rf"{BASE}/integrations/[^/]+/status")
#: Longest ``Authorization`` token the sign-in form takes (the API's own limit).
MAX_TOKEN_LENGTH = 200


class SignInRequired(RelaykitError):
    """A page asked for without a live session: the browser is sent to the sign-in page."""


class FormRefused(RelaykitError):
    """A POST without the session's CSRF token: a 403 page."""


class OriginRefused(RelaykitError):
    """A POST whose ``Origin`` names another site: a 403 page."""


# -- helpers ------------------------------------------------------------------------------------


def _services(request: Request[Any, Any, Any]) -> Services:
    return services_of(request.app)


def _session(request: Request[Any, Any, Any]) -> ConsoleSession:
    session = session_of(request.scope.get("user"))
    if session is None:
        raise SignInRequired()
    return session


def _secure(request: Request[Any, Any, Any]) -> bool:
    return request.url.scheme == "https"


def _same_origin(request: Request[Any, Any, Any]) -> bool:
    """Whether a POST comes from a page of this server: its ``Origin`` (when the browser
    sends one, as every current browser does on a form post) names the host the request was
    sent to — the ``Host`` header, the ``X-Forwarded-Host`` a proxy that rewrites ``Host``
    adds, or the host of ``RELAYKIT_PUBLIC_URL``. (A page on another site cannot add a
    header to the browser's form post, so none of these is the attacker's to choose.) The
    scheme is not compared: behind a proxy that ends TLS the server sees http."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    sent_from = urlsplit(origin).netloc.lower()
    ours = {
        str(request.headers.get("host") or "").lower(),
        str(request.headers.get("x-forwarded-host") or "").split(",")[0].strip().lower(),
    }
    public_url = _services(request).settings.public_url
    if public_url:
        ours.add(urlsplit(public_url).netloc.lower())
    return bool(sent_from) and sent_from in ours


async def _checked_form(request: Request[Any, Any, Any], expected: str | None) -> Any:
    """The POSTed form, once its CSRF token matches ``expected`` and its origin is ours."""
    form = await request.form()
    sent = form.get("csrf_token")
    if (
        not expected
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise FormRefused()
    if not _same_origin(request):
        raise OriginRefused()
    return form


def _page(
    request: Request[Any, Any, Any],
    template: str,
    *,
    title: str,
    nav: str = "",
    status_code: int = 200,
    **context: Any,
) -> Template:
    session = session_of(request.scope.get("user"))
    done = request.query_params.get("done")
    return Template(
        template_name=template,
        context={
            "title": title,
            "nav": nav,
            "session": session,
            "csrf": session.csrf_token if session is not None else "",
            "notice": NOTICES.get(done) if isinstance(done, str) else None,
            "problem": None,
            **context,
        },
        status_code=status_code,
    )


def _see(path: str, done: str | None = None) -> Redirect:
    return Redirect(path=f"{path}?{urlencode({'done': done})}" if done else path, status_code=303)


def _safe_next(value: Any) -> str:
    """Where to go after signing in: a console path of this server, nothing else."""
    if (
        isinstance(value, str)
        and value.startswith(f"{BASE}/")
        and "//" not in value
        and "\\" not in value
        and "/." not in value
        and all(0x20 < ord(c) < 0x7F for c in value)
    ):
        return value
    return f"{BASE}/"


async def _all_integrations(services: Services, tenant_id: str) -> list[Integration]:
    found: list[Integration] = []
    page = 1
    while True:
        batch = await services.integrations.list(tenant_id, page=page, per_page=100)
        found.extend(batch.items)
        if page >= batch.last_page:
            return found
        page += 1


async def _all_rules(services: Services, tenant_id: str) -> list[RoutingRule]:
    found: list[RoutingRule] = []
    page = 1
    while True:
        batch = await services.routing.list(tenant_id, page=page, per_page=100)
        found.extend(batch.items)
        if page >= batch.last_page:
            return found
        page += 1


def _verification(view: Integration) -> dict[str, Any]:
    record = view.metadata.get("verification")
    return record if isinstance(record, dict) else {}


def _status_message(view: Integration) -> str | None:
    """What the page says beside the status: why it is in ``error``, or what the last
    check said while it waits."""
    record = _verification(view)
    if view.status == "error":
        return str(record.get("error") or record.get("message") or "") or None
    if view.status == "pending_verify":
        return str(record.get("last_error") or "") or None
    return None


def _provider(services: Services, name: str) -> Provider:
    provider = services.catalog.get(name)
    if provider is None:
        raise NotFoundError("Provider not found.")
    return provider


def _capabilities(form: Any, provider: Provider) -> list[str]:
    chosen = [value for value in form.getall("capability", []) if isinstance(value, str)]
    return [name for name in provider.capabilities if name in chosen] + [
        name for name in chosen if name not in provider.capabilities
    ]


def _form_values(form: Any) -> dict[str, Any]:
    """A form as a plain mapping of its first values (what forms.* read)."""
    return {key: form.get(key) for key in form}


# -- the pages ----------------------------------------------------------------------------------


class ConsolePages(Controller):
    path = BASE
    include_in_schema = False

    # sign-in ------------------------------------------------------------------------------------

    @get("/sign-in")
    async def sign_in_page(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if session_of(request.scope.get("user")) is not None:
            return _see(f"{BASE}/")
        return self._sign_in_form(request, next_path=request.query_params.get("next"))

    def _sign_in_form(
        self,
        request: Request[Any, Any, Any],
        *,
        next_path: Any,
        problem: str | None = None,
        status_code: int = 200,
    ) -> Response[Any]:
        # a second sign-in tab keeps the first one's nonce, so both forms stay good
        nonce = cookie(request.scope, SIGN_IN_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", nonce):
            nonce = secrets.token_urlsafe(32)
        page = _page(
            request,
            "sign_in.html",
            title="Sign in",
            status_code=status_code,
            sign_in_nonce=nonce,
            next_path=_safe_next(next_path),
            problem=problem,
        )
        page.cookies.append(
            Cookie(
                key=SIGN_IN_COOKIE,
                value=nonce,
                path=BASE,
                max_age=3600,
                httponly=True,
                secure=_secure(request),
                samesite="strict",
            )
        )
        return page

    @post("/sign-in", status_code=303)
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await _checked_form(request, cookie(request.scope, SIGN_IN_COOKIE))
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        opened = None
        if token and len(token) <= MAX_TOKEN_LENGTH:
            opened = await _services(request).sessions.open(token)
        if opened is None:
            return self._sign_in_form(
                request,
                next_path=form.get("next"),
                problem="That token was not accepted. Check that it is whole and not revoked.",
                status_code=401,
            )
        secret, session = opened
        # a session this browser still held is over: one browser, one session
        await _services(request).sessions.close(cookie(request.scope, SESSION_COOKIE))
        logger.info("console: token %s signed in", session.token_id)
        response = _see(_safe_next(form.get("next")))
        response.cookies.append(
            Cookie(
                key=SESSION_COOKIE,
                value=secret,
                path=BASE,
                max_age=max(1, int(_services(request).sessions.lifetime.total_seconds())),
                httponly=True,
                secure=_secure(request),
                samesite="strict",
            )
        )
        response.delete_cookie(SIGN_IN_COOKIE, path=BASE)
        return response

    @post("/sign-out", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        session = _session(request)
        await _checked_form(request, session.csrf_token)
        # the very session the request was signed in with (session.cookie reads it)
        await _services(request).sessions.close(cookie(request.scope, SESSION_COOKIE))
        logger.info("console: token %s signed out", session.token_id)
        response = _see(f"{BASE}/sign-in", "signed-out")
        response.delete_cookie(SESSION_COOKIE, path=BASE)
        return response

    # providers ----------------------------------------------------------------------------------

    @get("/")
    async def providers(self, request: Request[Any, Any, Any]) -> Template:
        session = _session(request)
        services = _services(request)
        views = await _all_integrations(services, session.tenant_id)
        configured = {view.provider: view for view in views}
        catalog = [provider.describe() for provider in services.catalog]
        return _page(
            request,
            "providers.html",
            title="Providers",
            nav="providers",
            providers=catalog,
            configured=configured,
            orphans=[view for view in views if services.catalog.get(view.provider) is None],
        )

    @get("/providers/{provider_name:str}/configure")
    async def configure_page(
        self, request: Request[Any, Any, Any], provider_name: FromPath[str]
    ) -> Response[Any]:
        session = _session(request)
        services = _services(request)
        provider = _provider(services, provider_name)
        for view in await _all_integrations(services, session.tenant_id):
            if view.provider == provider.name:
                return _see(f"{BASE}/integrations/{view.id}/edit")
        return self._form(request, provider, None)

    def _form(
        self,
        request: Request[Any, Any, Any],
        provider: Provider,
        view: Integration | None,
        *,
        sent: Mapping[str, Any] | None = None,
        capabilities: Sequence[str] | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
        problem: str | None = None,
        status_code: int = 200,
    ) -> Template:
        """The configure form (``view`` None), or the edit form of ``view``: empty, filled
        with the stored public values, or as sent with the API's messages."""
        if view is None:
            title, stored, action = (
                f"Configure {provider.display_name}",
                None,
                f"{BASE}/providers/{provider.name}/configure",
            )
            current_capabilities: Sequence[str] = provider.capabilities
        else:
            # a sensitive field is null in every view (the form says "leave blank to keep")
            title, stored, action = (
                f"Edit {view.display_name}",
                view.credentials,
                f"{BASE}/integrations/{view.id}/edit",
            )
            current_capabilities = view.enabled_capabilities
        return _page(
            request,
            "configure.html",
            title=title,
            nav="providers",
            status_code=status_code,
            provider=provider,
            integration=view,
            fields=forms.credential_fields(provider, current=stored, sent=sent),
            capabilities=provider.capabilities,
            chosen=set(current_capabilities if capabilities is None else capabilities),
            metadata_rows=(
                forms.sent_metadata_rows(sent)
                if sent is not None
                else forms.metadata_rows(view.metadata if view is not None else {})
            ),
            errors=dict(errors or {}),
            action=action,
            problem=problem,
        )

    @post("/providers/{provider_name:str}/configure", status_code=303)
    async def configure(
        self, request: Request[Any, Any, Any], provider_name: FromPath[str]
    ) -> Response[Any]:
        session = _session(request)
        form = await _checked_form(request, session.csrf_token)
        services = _services(request)
        provider = _provider(services, provider_name)
        values = _form_values(form)
        capabilities = _capabilities(form, provider)
        metadata, metadata_problems = forms.metadata_from(values)
        body = forms.create_body(provider, values, capabilities, metadata)
        try:
            if metadata_problems:
                raise ValidationError(metadata_problems)
            view = await services.integrations.create(session.tenant_id, body)
        except (ValidationError, ConflictError) as exc:
            return self._refused(request, provider, None, values, capabilities, exc)
        return _see(f"{BASE}/integrations/{view.id}", "configured")

    def _refused(
        self,
        request: Request[Any, Any, Any],
        provider: Provider,
        view: Integration | None,
        values: Mapping[str, Any],
        capabilities: Sequence[str],
        exc: ValidationError | ConflictError,
    ) -> Template:
        """The form again, as sent, after the API refused it: its 422 beside the fields, or
        its 409 on top."""
        if isinstance(exc, ConflictError):
            return self._form(
                request,
                provider,
                view,
                sent=values,
                capabilities=capabilities,
                problem=str(exc),
                status_code=409,
            )
        not_done = "configured" if view is None else "changed"
        return self._form(
            request,
            provider,
            view,
            sent=values,
            capabilities=capabilities,
            errors=forms.field_errors(exc.errors, provider),
            problem=f"The integration was not {not_done}: see the messages below.",
            status_code=422,
        )

    # one integration ----------------------------------------------------------------------------

    @get("/integrations/{integration_id:str}")
    async def integration(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Template:
        session = _session(request)
        return await self._integration_page(request, session, integration_id)

    async def _integration_page(
        self,
        request: Request[Any, Any, Any],
        session: ConsoleSession,
        integration_id: str,
        *,
        problem: str | None = None,
        status_code: int = 200,
    ) -> Template:
        services = _services(request)
        view = await services.integrations.get(session.tenant_id, integration_id)
        tenant = session.tenant_id
        attempts = await services.deliveries.list(
            tenant, integration_id=integration_id, per_page=RECENT
        )
        events = await services.webhooks.list(
            tenant, integration_id=integration_id, per_page=RECENT
        )
        trail = await services.audit.integration_events(tenant, integration_id, per_page=RECENT)
        webhook = None
        # whether its secret is stored can't be told now: the page says nothing of it
        with contextlib.suppress(SealError):
            webhook = await services.webhooks.describe(tenant, integration_id)
        return _page(
            request,
            "integration.html",
            title=view.display_name,
            nav="providers",
            status_code=status_code,
            integration=view,
            provider=services.catalog.get(view.provider),
            status_message=_status_message(view),
            verification=_verification(view),
            metadata={k: v for k, v in view.metadata.items() if k != "verification"},
            attempts=attempts,
            events=events,
            trail=trail,
            webhook=webhook,
            problem=problem,
        )

    @get("/integrations/{integration_id:str}/status")
    async def integration_status(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Response[Any]:
        """The status the integration page polls while it is ``pending_verify`` (JSON)."""
        session = session_of(request.scope.get("user"))
        if session is None:
            raise NotAuthorizedException()
        view = await _services(request).integrations.get(session.tenant_id, integration_id)
        return Response({"status": view.status, "message": _status_message(view)})

    @get("/integrations/{integration_id:str}/edit")
    async def edit_page(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Template:
        session = _session(request)
        services = _services(request)
        view = await services.integrations.get(session.tenant_id, integration_id)
        return self._form(request, _provider(services, view.provider), view)

    @post("/integrations/{integration_id:str}/edit", status_code=303)
    async def edit(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Response[Any]:
        session = _session(request)
        form = await _checked_form(request, session.csrf_token)
        services = _services(request)
        view = await services.integrations.get(session.tenant_id, integration_id)
        provider = _provider(services, view.provider)
        values = _form_values(form)
        capabilities = _capabilities(form, provider)
        metadata, metadata_problems = forms.metadata_from(values)
        body = forms.update_body(provider, values, capabilities, metadata, view)
        try:
            if metadata_problems:
                raise ValidationError(metadata_problems)
            if not body:
                return _see(f"{BASE}/integrations/{view.id}", "unchanged")
            await services.integrations.update(session.tenant_id, integration_id, body)
        except (ValidationError, ConflictError) as exc:
            return self._refused(request, provider, view, values, capabilities, exc)
        return _see(f"{BASE}/integrations/{view.id}", "updated")

    async def _move(
        self,
        request: Request[Any, Any, Any],
        integration_id: str,
        change: Callable[[str, str], Awaitable[Any]],
        *,
        then: str,
        done: str,
    ) -> Response[Any]:
        """Activate, disable or delete (``change``, the service's own) from a form; a move
        the status forbids is the API's 409, shown on the integration's page."""
        session = _session(request)
        await _checked_form(request, session.csrf_token)
        try:
            await change(session.tenant_id, integration_id)
        except ConflictError as exc:
            return await self._integration_page(
                request, session, integration_id, problem=str(exc), status_code=409
            )
        return _see(then, done)

    @post("/integrations/{integration_id:str}/activate", status_code=303)
    async def activate(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Response[Any]:
        return await self._move(
            request,
            integration_id,
            _services(request).integrations.activate,
            then=f"{BASE}/integrations/{integration_id}",
            done="activated",
        )

    async def _confirm_page(
        self, request: Request[Any, Any, Any], integration_id: str, action: str
    ) -> Template:
        """The confirmation of a disable or a delete (a page of its own: no script needed)."""
        session = _session(request)
        view = await _services(request).integrations.get(session.tenant_id, integration_id)
        return _page(
            request,
            "confirm.html",
            title=f"{action.capitalize()} {view.display_name}",
            nav="providers",
            integration=view,
            action=action,
        )

    @get("/integrations/{integration_id:str}/disable")
    async def disable_page(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Template:
        return await self._confirm_page(request, integration_id, "disable")

    @get("/integrations/{integration_id:str}/delete")
    async def delete_page(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Template:
        return await self._confirm_page(request, integration_id, "delete")

    @post("/integrations/{integration_id:str}/disable", status_code=303)
    async def disable(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Response[Any]:
        return await self._move(
            request,
            integration_id,
            _services(request).integrations.disable,
            then=f"{BASE}/integrations/{integration_id}",
            done="disabled",
        )

    @post("/integrations/{integration_id:str}/delete", status_code=303)
    async def delete(
        self, request: Request[Any, Any, Any], integration_id: FromPath[str]
    ) -> Response[Any]:
        return await self._move(
            request,
            integration_id,
            _services(request).integrations.delete,
            then=f"{BASE}/",
            done="deleted",
        )

    # routing rules ------------------------------------------------------------------------------

    @get("/routing")
    async def routing(self, request: Request[Any, Any, Any]) -> Template:
        session = _session(request)
        return await self._routing_page(request, session)

    async def _routing_page(
        self,
        request: Request[Any, Any, Any],
        session: ConsoleSession,
        *,
        form_id: str | None = None,
        sent: Mapping[str, Any] | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
        problem: str | None = None,
        status_code: int = 200,
    ) -> Template:
        services = _services(request)
        integrations = await _all_integrations(services, session.tenant_id)
        rules = await _all_rules(services, session.tenant_id)
        by_id = {view.id: view for view in integrations}
        capabilities = sorted(
            {rule.capability for rule in rules}
            | {name for view in integrations for name in view.enabled_capabilities}
        )
        sections = []
        for capability in capabilities:
            mine = [rule for rule in rules if rule.capability == capability]
            # the order routing uses (relaykit.routing): the default, then priority, higher
            # first, ties by age
            mine.sort(key=lambda rule: (not rule.is_default, -rule.priority, rule.created_at))
            usable = {
                candidate.integration_id
                for candidate in await services.routing.candidates(session.tenant_id, capability)
            }
            tries: list[dict[str, Any]] = []
            for rule in mine:
                for target in (rule.integration_id, rule.fallback_integration_id):
                    if target and target not in [entry["id"] for entry in tries]:
                        view = by_id.get(target)
                        tries.append(
                            {
                                "id": target,
                                "name": view.display_name if view else "deleted integration",
                                "status": view.status if view else "deleted",
                                "used": target in usable,
                            }
                        )
            choices = [view for view in integrations if capability in view.enabled_capabilities]
            sections.append(
                {"capability": capability, "rules": mine, "tries": tries, "choices": choices}
            )
        return _page(
            request,
            "routing.html",
            title="Routing rules",
            nav="routing",
            status_code=status_code,
            sections=sections,
            integrations=by_id,
            form_id=form_id,
            sent=sent or {},
            errors=dict(errors or {}),
            problem=problem,
        )

    @staticmethod
    def _rule_body(form: Any, *, with_capability: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "integration_id": form.get("integration_id") or "",
            "fallback_integration_id": form.get("fallback_integration_id") or None,
            "is_default": form.get("is_default") is not None,
        }
        if with_capability:
            body["capability"] = form.get("capability") or ""
        priority = str(form.get("priority") or "").strip()
        if priority:
            # ASCII digits only (int() would take "١٢" or "1_2"); else the text, which the
            # API refuses with its own message
            body["priority"] = int(priority) if forms.INTEGER.fullmatch(priority) else priority
        elif not with_capability:
            body["priority"] = 0
        return body

    async def _write_rule(
        self,
        request: Request[Any, Any, Any],
        *,
        rule_id: str | None,
    ) -> Response[Any]:
        """Create a rule (``rule_id`` None) or change one from its form; the API's 422 or 409
        is the routing page again, the messages beside that form's fields."""
        session = _session(request)
        form = await _checked_form(request, session.csrf_token)
        body = self._rule_body(form, with_capability=rule_id is None)
        routing = _services(request).routing
        try:
            if rule_id is None:
                await routing.create(session.tenant_id, body)
            else:
                await routing.update(session.tenant_id, rule_id, body)
        except (ValidationError, ConflictError) as exc:
            invalid = isinstance(exc, ValidationError)
            what = "created" if rule_id is None else "changed"
            return await self._routing_page(
                request,
                session,
                form_id=rule_id or f"new-{body['capability']}",
                sent=_form_values(form),
                errors=exc.errors if isinstance(exc, ValidationError) else None,
                problem=(
                    f"The routing rule was not {what}: see the messages below."
                    if invalid
                    else str(exc)
                ),
                status_code=422 if invalid else 409,
            )
        return _see(f"{BASE}/routing", "rule-created" if rule_id is None else "rule-updated")

    @post("/routing", status_code=303)
    async def create_rule(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await self._write_rule(request, rule_id=None)

    @post("/routing/{rule_id:str}", status_code=303)
    async def update_rule(
        self, request: Request[Any, Any, Any], rule_id: FromPath[str]
    ) -> Response[Any]:
        return await self._write_rule(request, rule_id=rule_id)

    @get("/routing/{rule_id:str}/delete")
    async def delete_rule_page(
        self, request: Request[Any, Any, Any], rule_id: FromPath[str]
    ) -> Template:
        session = _session(request)
        rule = await _services(request).routing.get(session.tenant_id, rule_id)
        return _page(request, "confirm_rule.html", title="Delete routing rule", rule=rule)

    @post("/routing/{rule_id:str}/delete", status_code=303)
    async def delete_rule(
        self, request: Request[Any, Any, Any], rule_id: FromPath[str]
    ) -> Response[Any]:
        session = _session(request)
        await _checked_form(request, session.csrf_token)
        await _services(request).routing.delete(session.tenant_id, rule_id)
        return _see(f"{BASE}/routing", "rule-deleted")

    # delivery attempts --------------------------------------------------------------------------

    @get("/delivery-attempts")
    async def attempts(self, request: Request[Any, Any, Any]) -> Template:
        session = _session(request)
        services = _services(request)
        query = request.query_params
        filters = {
            name: (str(query.get(name) or "").strip() or None)
            for name in ("capability", "status", "integration_id", "operation_id")
        }
        raw_page = str(query.get("page") or "1")
        errors: dict[str, list[str]] = {}
        found = None
        page_number = int(raw_page) if re.fullmatch(r"[0-9]{1,8}", raw_page) else 0
        if page_number < 1:
            errors["page"] = ["The page must be a positive integer."]
        else:
            try:
                found = await services.deliveries.list(
                    session.tenant_id,
                    page=page_number,
                    per_page=ATTEMPTS_PER_PAGE,
                    **filters,
                )
            except ValidationError as exc:
                errors = exc.errors
        integrations = await _all_integrations(services, session.tenant_id)

        def link(page: int) -> str:
            kept = {key: value for key, value in filters.items() if value}
            return f"{BASE}/delivery-attempts?{urlencode({**kept, 'page': page})}"

        return _page(
            request,
            "attempts.html",
            title="Delivery attempts",
            nav="attempts",
            status_code=422 if errors else 200,
            filters=filters,
            errors=errors,
            found=found,
            link=link,
            statuses=ATTEMPT_STATUSES,
            capabilities=sorted(services.catalog.contracts),
            integrations={view.id: view for view in integrations},
        )

    # anything else ------------------------------------------------------------------------------

    @get("/{rest:path}")
    async def unknown(self, request: Request[Any, Any, Any], rest: FromPath[str]) -> Template:
        """A console path no page has: a page saying so (the API's 404 is JSON)."""
        _session(request)
        raise NotFoundError("There is no such page in the console.")


# -- errors as pages ----------------------------------------------------------------------------


def _api_answer(request: Request[Any, Any, Any], exc: Exception) -> tuple[int, str]:
    """The status and message the API would give for ``exc`` (relaykit_server.errors: the
    same mapping, logging included)."""
    for kind, handler in EXCEPTION_HANDLERS.items():
        if isinstance(kind, type) and isinstance(exc, kind):
            answer = handler(request, exc)
            content = answer.content
            message = getattr(content, "message", None)
            if message is None and isinstance(content, dict):
                message = content.get("message")
            return answer.status_code, str(message or "The request failed.")
    return 500, "Server error."


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Any failure on a console page, as a page: the sign-in page for a signed-out
    browser, else the status the API would answer and its message (never a traceback)."""
    if isinstance(exc, SignInRequired):
        wanted = request.url.path
        if request.method == "GET" and request.url.query:
            wanted = f"{wanted}?{request.url.query}"
        target = f"{BASE}/sign-in"
        if request.method == "GET" and wanted not in (f"{BASE}/", BASE):
            target = f"{target}?{urlencode({'next': wanted})}"
        return Redirect(path=target, status_code=303)
    if isinstance(exc, OriginRefused):
        status, message = (
            403,
            (
                "This form was refused: it was sent from another site than this console. If "
                "relaykit is behind a proxy, the proxy must keep the Host header or send "
                "X-Forwarded-Host, or RELAYKIT_PUBLIC_URL must name the address the browser uses."
            ),
        )
    elif isinstance(exc, FormRefused):
        status, message = (
            403,
            (
                "This form was refused: it did not carry this session's security token (it may "
                "have been open for too long, or sent from another site). Go back, reload the "
                "page and send it again."
            ),
        )
    elif isinstance(exc, NotAuthorizedException):
        status, message = 401, "Sign in first."
    elif isinstance(exc, PermissionDeniedException):
        status, message = 403, "This action is not allowed."
    else:
        status, message = _api_answer(request, exc)
    headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
    if request.method == "GET" and STATUS_PATH.fullmatch(request.url.path):
        return Response({"message": message}, status_code=status, headers=headers)
    page = _page(
        request,
        "error.html",
        title="Not found" if status == 404 else "Something went wrong",
        status_code=status,
        status=status,
        message=message,
    )
    page.headers.update(headers)
    return page
