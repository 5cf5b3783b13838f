"""The console (/console/) over HTTP, in process: sessions, CSRF, escaping, tenants, forms.

The browser itself drives it in tests/browser (Chromium); these tests hold the console's
security promises and its forms to account request by request: what is refused, what is
escaped, what never appears, what each form sends to the API's services.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import AsyncTestClient

from relaykit import CredentialField, Provider, VerificationResult, hookimpl
from relaykit import tenants as store
from relaykit.dispatch import open_sealed
from relaykit.plugins import RelaykitPluginManager, make_plugin_manager
from relaykit.settings import Settings
from relaykit.storage.database import open_database
from relaykit.storage.models import audit_events, console_sessions, integrations
from relaykit_server import create_app

from .conftest import MESSAGING, PAYMENTS, Api, TestProviders

pytestmark = pytest.mark.anyio

CANARY = "console-canary-secret-5c1d"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


class Visitor:
    """One browser: its own cookie jar, the CSRF token of the page it saw last."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.get(path, follow_redirects=False, **kwargs)
        found = CSRF_FIELD.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(
        self, path: str, data: dict[str, Any], *, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        body = {"csrf_token": self.csrf, **data} if csrf else data
        return await self.client.post(path, data=body, follow_redirects=False, **kwargs)

    async def sign_in(self, token: str) -> httpx.Response:
        await self.get("/console/sign-in")
        answer = await self.post("/console/sign-in", {"token": token, "next": "/console/"})
        assert answer.status_code == 303, answer.text
        await self.get("/console/")  # the session's CSRF token
        return answer


class Console:
    def __init__(self, api: Api) -> None:
        self.api = api

    def visitor(self) -> Visitor:
        app = self.api.client.app
        return Visitor(AsyncTestClient(app=app, base_url="http://testserver.local"))

    def tenant(self, name: str) -> tuple[str, str]:
        tenant_id, headers = self.api.tenant_token(name)
        return tenant_id, headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def console(api: Api) -> Console:
    return Console(api)


async def signed_in(console: Console, tenant: str = "acme") -> tuple[Visitor, str, str]:
    tenant_id, token = console.tenant(tenant)
    visitor = console.visitor()
    await visitor.sign_in(token)
    return visitor, tenant_id, token


def textly_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "cred-account_sid": "AC123",
        "cred-auth_token": CANARY,
        "cred-from_number": "+15550100000",
        "capability": ["send_sms"],
        "meta-rows": "3",
        "meta-key-0": "environment",
        "meta-value-0": "staging",
    }
    form.update(overrides)
    return form


async def configure(visitor: Visitor, provider: str = "textly", **overrides: Any) -> str:
    await visitor.get(f"/console/providers/{provider}/configure")
    answer = await visitor.post(
        f"/console/providers/{provider}/configure", textly_form(**overrides)
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.endswith("?done=configured")
    return location.split("/")[3].split("?")[0]


def session_count(api: Api) -> int:
    return api.database.read_blocking(
        lambda conn: conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar()
    )


def integration_count(api: Api) -> int:
    return api.database.read_blocking(
        lambda conn: conn.execute(sa.select(sa.func.count()).select_from(integrations)).scalar()
    )


# -- signing in ---------------------------------------------------------------------------------


async def test_a_signed_out_browser_is_sent_to_sign_in_and_back_where_it_was(
    console: Console,
) -> None:
    _, token = console.tenant("acme")
    visitor = console.visitor()
    answer = await visitor.get("/console/routing")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?next=%2Fconsole%2Frouting"

    page = await visitor.get("/console/sign-in?next=%2Fconsole%2Frouting")
    assert page.status_code == 200
    assert '<input id="token" name="token" type="password"' in page.text
    assert 'name="next" value="/console/routing"' in page.text
    signed = await visitor.post("/console/sign-in", {"token": token, "next": "/console/routing"})
    assert signed.status_code == 303
    assert signed.headers["location"] == "/console/routing"
    assert (await visitor.get("/console/routing")).status_code == 200


async def test_the_session_cookie_is_httponly_strict_scoped_and_expiring(console: Console) -> None:
    _, token = console.tenant("acme")
    visitor = console.visitor()
    answer = await visitor.sign_in(token)
    cookie = next(
        value
        for value in answer.headers.get_list("set-cookie")
        if value.startswith("relaykit_session=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert "Max-Age=28800" in cookie
    assert "secure" not in attributes  # served over plain http here
    # the cookie is not the token, and the database keeps only a digest of it
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert secret not in token
    rows = console.api.database.read_blocking(
        lambda conn: conn.execute(sa.select(console_sessions)).all()
    )
    assert len(rows) == 1
    assert secret not in repr(tuple(rows[0])) and token not in repr(tuple(rows[0]))


async def test_over_https_the_cookie_is_secure(console: Console) -> None:
    _, token = console.tenant("acme")
    visitor = Visitor(AsyncTestClient(app=console.api.client.app, base_url="https://console.test"))
    answer = await visitor.sign_in(token)
    cookie = next(
        v for v in answer.headers.get_list("set-cookie") if v.startswith("relaykit_session=")
    )
    assert "Secure" in cookie


@pytest.mark.parametrize(
    "token", ["", "rk_nope", "not a token at all", "rk_" + "x" * 500, "Bearer rk_abc"]
)
async def test_a_wrong_token_signs_nobody_in(console: Console, token: str) -> None:
    console.tenant("acme")
    visitor = console.visitor()
    await visitor.get("/console/sign-in")
    answer = await visitor.post("/console/sign-in", {"token": token})
    assert answer.status_code == 401
    assert 'role="alert"' in answer.text and "not accepted" in answer.text
    assert "relaykit_session" not in answer.headers.get("set-cookie", "")
    assert session_count(console.api) == 0


async def test_the_sign_in_form_needs_its_own_token(console: Console) -> None:
    _, token = console.tenant("acme")
    visitor = console.visitor()
    await visitor.get("/console/sign-in")
    # a login CSRF: a form posted from elsewhere, without the cookie's value
    answer = await visitor.post("/console/sign-in", {"token": token, "csrf_token": "forged"})
    assert answer.status_code == 403
    assert session_count(console.api) == 0
    stranger = console.visitor()  # never saw the form: no cookie
    answer = await stranger.post("/console/sign-in", {"token": token}, csrf=False)
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "wanted",
    [
        "https://evil.example/console/",
        "//evil.example/console/",
        "/console//evil.example",
        "/api/v1/integrations",
        "/console/\\evil",
        "javascript:alert(1)",
    ],
)
async def test_after_sign_in_only_a_console_path_is_followed(console: Console, wanted: str) -> None:
    _, token = console.tenant("acme")
    visitor = console.visitor()
    await visitor.get("/console/sign-in")
    answer = await visitor.post("/console/sign-in", {"token": token, "next": wanted})
    assert answer.headers["location"] == "/console/"


async def test_sign_out_ends_the_session_for_good(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    cookie = visitor.client.cookies.get("relaykit_session")
    answer = await visitor.post("/console/sign-out", {})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?done=signed-out"
    assert session_count(console.api) == 0
    # the old cookie, replayed, is nobody
    replay = console.visitor()
    replay.client.cookies.set("relaykit_session", cookie or "")
    assert (await replay.get("/console/")).status_code == 303


async def test_revoking_the_token_ends_its_sessions(console: Console) -> None:
    visitor, _, token = await signed_in(console)
    assert (await visitor.get("/console/")).status_code == 200
    console.api.database.transaction_blocking(store.revoke_token, token)
    answer = await visitor.get("/console/")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")


async def test_an_expired_session_is_refused_and_removed(console: Console) -> None:
    visitor, _, _ = await signed_in(console)

    def expire(conn: sa.Connection) -> None:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        conn.execute(console_sessions.update().values(expires_at=past))

    console.api.database.transaction_blocking(expire)
    assert (await visitor.get("/console/")).status_code == 303
    assert session_count(console.api) == 0


# -- CSRF, origin, headers ----------------------------------------------------------------------


async def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
    console: Console,
) -> None:
    visitor, _, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    missing = await visitor.post("/console/providers/textly/configure", textly_form(), csrf=False)
    assert missing.status_code == 403
    assert "security token" in missing.text
    wrong = await visitor.post(
        "/console/providers/textly/configure", {**textly_form(), "csrf_token": "x" * 43}, csrf=False
    )
    assert wrong.status_code == 403
    assert integration_count(console.api) == 0

    integration_id = await configure(visitor)
    for action in ("disable", "delete", "activate"):
        answer = await visitor.post(
            f"/console/integrations/{integration_id}/{action}", {}, csrf=False
        )
        assert answer.status_code == 403, action
    view = await console.api.services.integrations.get(
        (
            await console.api.services.sessions.find(visitor.client.cookies["relaykit_session"])
        ).tenant_id,  # type: ignore[union-attr]
        integration_id,
    )
    # not disabled, not deleted (the embedded worker may have verified it meanwhile)
    assert view.status in ("pending_verify", "active")
    assert (await visitor.post("/console/sign-out", {}, csrf=False)).status_code == 403
    assert session_count(console.api) == 1


async def test_another_sessions_csrf_token_does_not_pass(console: Console) -> None:
    mine, _, _ = await signed_in(console, "acme")
    other = console.visitor()
    _, token = console.tenant("globex")
    await other.sign_in(token)
    assert other.csrf and other.csrf != mine.csrf
    await mine.get("/console/providers/textly/configure")
    answer = await mine.post(
        "/console/providers/textly/configure",
        {**textly_form(), "csrf_token": other.csrf},
        csrf=False,
    )
    assert answer.status_code == 403
    assert integration_count(console.api) == 0


async def test_a_post_from_another_origin_is_refused_even_with_the_token(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    answer = await visitor.post(
        "/console/providers/textly/configure",
        textly_form(),
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert integration_count(console.api) == 0
    same = await visitor.post(
        "/console/providers/textly/configure",
        textly_form(),
        headers={"Origin": "http://testserver.local"},
    )
    assert same.status_code == 303


async def test_every_page_carries_the_security_headers_and_no_inline_script(
    console: Console,
) -> None:
    visitor, _, _ = await signed_in(console)
    integration_id = await configure(visitor)
    pages = [
        "/console/sign-in",
        "/console/",
        "/console/providers/paymo/configure",
        f"/console/integrations/{integration_id}",
        f"/console/integrations/{integration_id}/edit",
        f"/console/integrations/{integration_id}/disable",
        f"/console/integrations/{integration_id}/delete",
        "/console/routing",
        "/console/delivery-attempts",
        "/console/integrations/01hwnothere0000000000000000",
        "/console/no/such/page",
    ]
    for path in pages:
        answer = await visitor.get(path)
        assert answer.status_code in (200, 303, 404), (path, answer.status_code)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        if answer.status_code != 303:
            assert answer.headers["content-type"].startswith("text/html")
            # no inline script or style for the CSP to block: scripts only by src
            for tag in re.findall(r"<script\b[^>]*>", answer.text):
                assert 'src="/console/static/' in tag, (path, tag)
            assert not re.search(r"<script\b[^>]*>\s*[^<\s]", answer.text), path
            assert " style=" not in answer.text and "<style" not in answer.text, path
            assert re.search(r"\son\w+=", answer.text) is None, path  # no onclick=…


async def test_the_static_files_are_served_and_the_script_is_small(console: Console) -> None:
    visitor = console.visitor()
    script = await visitor.get("/console/static/console.js")
    style = await visitor.get("/console/static/console.css")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert len(script.content) < 4096
    assert "http://" not in script.text and "https://" not in script.text


# -- escaping and secrets -----------------------------------------------------------------------


SCRIPT = "<script>alert('relaykit')</script>"


async def _refuse(credentials: Any, ctx: Any) -> VerificationResult:
    return VerificationResult.rejected(f"Bad key {SCRIPT} <img src=x onerror=alert(1)>")


EVIL = msgspec.structs.replace(MESSAGING, name="evil", display_name="Evil", verify=_refuse)


class EvilProviders:
    @hookimpl
    def relaykit_providers(self) -> list[Provider]:
        return [EVIL]


async def eventually(condition: Callable[[], Awaitable[bool]], *, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while not await condition():
            await anyio.sleep(0.02)


@pytest.fixture
def plugin_manager() -> RelaykitPluginManager:
    return make_plugin_manager(
        load_entrypoints=False,
        plugins=[("test-providers", TestProviders()), ("evil", EvilProviders())],
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the worker runs, fast: the escaping test needs a real verification's message
    return msgspec.structs.replace(
        settings, embedded_worker=True, worker_poll=0.05, worker_heartbeat=1.0
    )


async def test_a_providers_message_with_markup_is_shown_as_text(console: Console) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    integration_id = await configure(
        visitor, "evil", **{"meta-key-1": "note", "meta-value-1": SCRIPT}
    )

    async def failed() -> bool:
        view = await console.api.services.integrations.get(tenant_id, integration_id)
        return view.status == "error"

    await eventually(failed)
    page = await visitor.get(f"/console/integrations/{integration_id}")
    assert page.status_code == 200
    assert SCRIPT not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#39;relaykit&#39;)&lt;/script&gt;" in page.text
    assert 'id="status-message"' in page.text
    status = await visitor.get(f"/console/integrations/{integration_id}/status")
    assert status.headers["content-type"].startswith("application/json")
    assert status.json()["status"] == "error"
    assert SCRIPT in status.json()["message"]  # JSON, read as text by the script
    edit = await visitor.get(f"/console/integrations/{integration_id}/edit")
    assert SCRIPT not in edit.text and "&lt;script&gt;" in edit.text


async def test_the_canary_secret_never_appears_in_any_page(console: Console) -> None:
    visitor, _, token = await signed_in(console)
    integration_id = await configure(visitor)
    rule = await visitor.post(
        "/console/routing",
        {"capability": "send_sms", "integration_id": integration_id, "priority": "5"},
    )
    assert rule.status_code == 303
    # a form shown again with errors keeps no secret either
    again = await visitor.post(
        "/console/providers/paymo/configure",
        {
            "cred-publishable_key": "",
            "cred-secret_key": CANARY,
            "cred-webhook_secret": CANARY,
            "capability": ["initiate_payment"],
        },
    )
    assert again.status_code == 422 and CANARY not in again.text
    pages = [
        "/console/",
        f"/console/integrations/{integration_id}",
        f"/console/integrations/{integration_id}/status",
        f"/console/integrations/{integration_id}/edit",
        f"/console/integrations/{integration_id}/disable",
        "/console/routing",
        "/console/delivery-attempts",
        f"/console/delivery-attempts?integration_id={integration_id}",
    ]
    for path in pages:
        answer = await visitor.get(path)
        assert answer.status_code == 200, path
        assert CANARY not in answer.text, path
        assert token not in answer.text, path
    edit = await visitor.get(f"/console/integrations/{integration_id}/edit")
    field = re.search(r'<input id="cred-auth_token"[^>]*>', edit.text)
    assert field is not None
    assert 'type="password"' in field.group(0) and 'value=""' in field.group(0)


# -- tenants ------------------------------------------------------------------------------------


async def test_one_tenants_session_cannot_reach_anothers_integration(console: Console) -> None:
    acme, acme_id, _ = await signed_in(console, "acme")
    integration_id = await configure(acme)
    globex, _, _ = await signed_in(console, "globex")
    for path in (
        f"/console/integrations/{integration_id}",
        f"/console/integrations/{integration_id}/edit",
        f"/console/integrations/{integration_id}/disable",
        f"/console/integrations/{integration_id}/delete",
    ):
        answer = await globex.get(path)
        assert answer.status_code == 404, path
        assert "acme" not in answer.text and "AC123" not in answer.text
    status = await globex.get(f"/console/integrations/{integration_id}/status")
    assert status.status_code == 404
    for action in ("disable", "delete", "activate", "edit"):
        answer = await globex.post(
            f"/console/integrations/{integration_id}/{action}",
            textly_form(**{"cred-account_sid": "AC999"}),
        )
        assert answer.status_code == 404, action
    rule = await globex.post(
        "/console/routing", {"capability": "send_sms", "integration_id": integration_id}
    )
    assert rule.status_code == 422
    view = await console.api.services.integrations.get(acme_id, integration_id)
    assert view.credentials["account_sid"] == "AC123"
    assert (await globex.get("/console/")).text.count("Not configured.") == 4


# -- the forms ----------------------------------------------------------------------------------


async def test_each_providers_form_comes_from_its_credential_schema(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    page = (await visitor.get("/console/providers/paymo/configure")).text
    inputs = dict(re.findall(r'<input id="(cred-[a-z_]+)" name="[^"]+" type="([a-z]+)"', page))
    assert inputs == {
        "cred-publishable_key": "text",
        "cred-secret_key": "password",
        "cred-webhook_secret": "password",
    }
    for key in inputs:
        assert f'<label for="{key}">' in page
    assert "(optional)" in page  # webhook_secret
    for capability in PAYMENTS.capabilities:
        assert f'id="cap-{capability}" name="capability" value="{capability}"' in page
    assert (await visitor.get("/console/providers/nope/configure")).status_code == 404


async def test_the_apis_field_errors_are_shown_beside_their_fields(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    answer = await visitor.post(
        "/console/providers/textly/configure",
        textly_form(**{"cred-auth_token": "", "cred-from_number": "555"}),
    )
    assert answer.status_code == 422
    assert (
        '<p class="field-error" id="cred-auth_token-error">'
        "The credentials.auth_token field is required.</p>" in answer.text
    )
    assert 'id="cred-from_number-error">The credentials.from_number field format is invalid.' in (
        answer.text
    )
    number = re.search(r'<input id="cred-from_number"[^>]*>', answer.text)
    assert number is not None
    assert 'aria-invalid="true"' in number.group(0)
    assert "cred-from_number-error" in number.group(0)
    assert 'value="555"' in number.group(0)  # what was typed stays
    assert integration_count(console.api) == 0


async def test_a_configured_provider_opens_its_edit_form(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    integration_id = await configure(visitor)
    answer = await visitor.get("/console/providers/textly/configure")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/integrations/{integration_id}/edit"


async def test_editing_with_blank_secrets_keeps_them_and_sends_only_changes(
    console: Console,
) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    integration_id = await configure(visitor)
    services = console.api.services

    async def secret() -> Any:
        def read(conn: sa.Connection) -> bytes:
            return conn.execute(
                sa.select(integrations.c.sealed_credentials).where(
                    integrations.c.id == integration_id
                )
            ).scalar_one()

        blob = console.api.database.read_blocking(read)
        opened = await open_sealed(services.key_provider, tenant_id, integration_id, "textly", blob)
        return opened["auth_token"]

    assert await secret() == CANARY
    await visitor.get(f"/console/integrations/{integration_id}/edit")
    same = await visitor.post(
        f"/console/integrations/{integration_id}/edit",
        textly_form(**{"cred-auth_token": ""}),
    )
    assert same.headers["location"].endswith("?done=unchanged")
    changed = await visitor.post(
        f"/console/integrations/{integration_id}/edit",
        textly_form(
            **{
                "cred-auth_token": "",
                "cred-account_sid": "AC456",
                "capability": ["send_sms", "send_whatsapp"],
                "meta-value-0": "production",
            }
        ),
    )
    assert changed.headers["location"].endswith("?done=updated")
    view = await services.integrations.get(tenant_id, integration_id)
    assert view.credentials == {
        "account_sid": "AC456",
        "auth_token": None,
        "from_number": "+15550100000",
    }
    assert view.enabled_capabilities == ["send_sms", "send_whatsapp"]
    assert view.metadata.get("environment") == "production"
    assert await secret() == CANARY  # a blank secret field keeps the stored value

    replaced = await visitor.post(
        f"/console/integrations/{integration_id}/edit",
        textly_form(**{"cred-auth_token": "new-secret-value", "cred-account_sid": "AC456"}),
    )
    assert replaced.headers["location"].endswith("?done=updated")
    assert await secret() == "new-secret-value"


async def test_metadata_rows_round_trip_and_say_what_is_wrong(console: Console) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    answer = await visitor.post(
        "/console/providers/textly/configure",
        textly_form(**{"meta-key-1": "environment", "meta-value-1": "twice"}),
    )
    assert answer.status_code == 422
    assert 'id="meta-key-1-error">The key environment is given twice.' in answer.text
    integration_id = await configure(visitor)
    # a value stored as JSON by the API comes back as JSON and stays a number
    await console.api.services.integrations.update(
        tenant_id, integration_id, {"metadata": {"environment": "staging", "shards": 3}}
    )
    edit = await visitor.get(f"/console/integrations/{integration_id}/edit")
    assert 'name="meta-kind-1" value="json"' in edit.text
    answer = await visitor.post(
        f"/console/integrations/{integration_id}/edit",
        textly_form(
            **{
                "cred-auth_token": "",
                "meta-key-1": "shards",
                "meta-value-1": "4",
                "meta-kind-1": "json",
                "meta-key-0": "",
                "meta-value-0": "",
            }
        ),
    )
    assert answer.status_code == 303
    view = await console.api.services.integrations.get(tenant_id, integration_id)
    assert {k: v for k, v in view.metadata.items() if k != "verification"} == {"shards": 4}


async def test_disable_and_delete_ask_first_and_record_the_token_as_actor(
    console: Console,
) -> None:
    visitor, tenant_id, token = await signed_in(console)
    integration_id = await configure(visitor)

    async def active() -> bool:
        return (await console.api.services.integrations.get(tenant_id, integration_id)).status == (
            "active"
        )

    await eventually(active)
    confirm = await visitor.get(f"/console/integrations/{integration_id}/disable")
    assert confirm.status_code == 200
    assert f'action="/console/integrations/{integration_id}/disable"' in confirm.text
    assert (await console.api.services.integrations.get(tenant_id, integration_id)).status == (
        "active"
    )  # asking changes nothing
    done = await visitor.post(f"/console/integrations/{integration_id}/disable", {})
    assert done.headers["location"] == f"/console/integrations/{integration_id}?done=disabled"
    page = await visitor.get(done.headers["location"])
    assert "Integration disabled" in page.text and ">Activate</button>" in page.text
    # a forbidden transition is the API's 409, on the page
    again = await visitor.post(f"/console/integrations/{integration_id}/disable", {})
    assert again.status_code == 409 and 'role="alert"' in again.text
    deleted = await visitor.post(f"/console/integrations/{integration_id}/delete", {})
    assert deleted.headers["location"] == "/console/?done=deleted"
    assert (await visitor.get(f"/console/integrations/{integration_id}")).status_code == 404

    token_id = token.split("_")[1]
    actors = console.api.database.read_blocking(
        lambda conn: conn.execute(
            sa.select(audit_events.c.action, audit_events.c.actor).where(
                audit_events.c.integration_id == integration_id
            )
        ).all()
    )
    assert ("integration.disabled", token_id) in actors
    assert ("integration.deleted", token_id) in actors
    assert ("integration.created", token_id) in actors


async def test_routing_rules_are_created_changed_and_deleted_through_the_page(
    console: Console,
) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    first = await configure(visitor)
    second = await configure(visitor, "chatter")
    await visitor.get("/console/routing")
    bad = await visitor.post(
        "/console/routing",
        {"capability": "send_sms", "integration_id": first, "priority": "high"},
    )
    assert bad.status_code == 422
    assert "The priority field must be an integer." in bad.text
    made = await visitor.post(
        "/console/routing",
        {
            "capability": "send_sms",
            "integration_id": first,
            "fallback_integration_id": second,
            "is_default": "on",
            "priority": "100",
        },
    )
    assert made.headers["location"] == "/console/routing?done=rule-created"
    rules = (await console.api.services.routing.list(tenant_id)).items
    assert [
        (r.integration_id, r.fallback_integration_id, r.is_default, r.priority) for r in rules
    ] == [(first, second, True, 100)]
    rule_id = rules[0].id
    page = await visitor.get("/console/routing")
    assert "An operation tries, in this order:" in page.text
    changed = await visitor.post(
        f"/console/routing/{rule_id}",
        {
            "integration_id": second,
            "fallback_integration_id": "",
            "priority": "7",
            "is_default": "on",
        },
    )
    assert changed.headers["location"] == "/console/routing?done=rule-updated"
    rule = await console.api.services.routing.get(tenant_id, rule_id)
    assert (rule.integration_id, rule.fallback_integration_id, rule.priority) == (second, None, 7)
    same = await visitor.post(
        f"/console/routing/{rule_id}",
        {"integration_id": second, "fallback_integration_id": second, "priority": "7"},
    )
    assert same.status_code == 422  # the API's rule: the fallback differs from the integration
    confirm = await visitor.get(f"/console/routing/{rule_id}/delete")
    assert confirm.status_code == 200
    gone = await visitor.post(f"/console/routing/{rule_id}/delete", {})
    assert gone.headers["location"] == "/console/routing?done=rule-deleted"
    assert (await console.api.services.routing.list(tenant_id)).items == []


async def test_the_attempts_page_filters_and_says_what_is_wrong(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    ok = await visitor.get("/console/delivery-attempts?status=succeeded&capability=send_sms")
    assert ok.status_code == 200 and "0 attempts" in ok.text
    bad = await visitor.get("/console/delivery-attempts?status=bogus&operation_id=%3Cscript%3E")
    assert bad.status_code == 422
    assert 'id="status-error"' in bad.text and 'id="operation_id-error"' in bad.text
    assert "<script>" not in bad.text
    assert (await visitor.get("/console/delivery-attempts?page=0")).status_code == 422


async def test_bad_requests_get_pages_not_tracebacks(console: Console, tmp_path: Path) -> None:
    visitor, _, _ = await signed_in(console)
    huge = await visitor.client.post(
        "/console/providers/textly/configure",
        content=b"csrf_token=" + b"x" * (2 * 1024 * 1024),
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert huge.status_code == 413
    assert "Traceback" not in huge.text
    odd = await visitor.client.post(
        "/console/providers/textly/configure",
        content=b"\xff\xfe%%%",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert odd.status_code in (400, 403)
    assert "Traceback" not in odd.text
    many = await visitor.post(
        "/console/providers/textly/configure", textly_form(**{"meta-rows": "99999999999"})
    )
    assert many.status_code == 303


# -- what the review found ----------------------------------------------------------------------


async def test_no_capability_ticked_is_sent_as_none_not_a_server_error(console: Console) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    form = textly_form()
    del form["capability"]
    made = await visitor.post("/console/providers/textly/configure", form)
    assert made.status_code == 303, made.text
    integration_id = made.headers["location"].split("/")[3].split("?")[0]
    view = await console.api.services.integrations.get(tenant_id, integration_id)
    assert view.enabled_capabilities == []
    edited = await visitor.post(
        f"/console/integrations/{integration_id}/edit",
        {**form, "cred-auth_token": "", "capability": ["send_sms"]},
    )
    assert edited.status_code == 303
    emptied = await visitor.post(
        f"/console/integrations/{integration_id}/edit", {**form, "cred-auth_token": ""}
    )
    assert emptied.status_code == 303, emptied.text
    assert (
        await console.api.services.integrations.get(tenant_id, integration_id)
    ).enabled_capabilities == []


async def test_only_the_moves_the_status_allows_are_offered(console: Console) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    evil = await configure(visitor, "evil")
    fine = await configure(visitor)

    async def settled() -> bool:
        views = [await console.api.services.integrations.get(tenant_id, i) for i in (evil, fine)]
        return [view.status for view in views] == ["error", "active"]

    await eventually(settled)
    failed = (await visitor.get(f"/console/integrations/{evil}")).text
    assert ">Activate</button>" not in failed and ">Disable</a>" not in failed
    assert "edit the integration</a> and enter the credentials again" in failed
    active = (await visitor.get(f"/console/integrations/{fine}")).text
    assert ">Disable</a>" in active and ">Activate</button>" not in active
    assert (await visitor.post(f"/console/integrations/{fine}/disable", {})).status_code == 303
    inactive = (await visitor.get(f"/console/integrations/{fine}")).text
    assert ">Activate</button>" in inactive and ">Disable</a>" not in inactive


async def test_behind_a_proxy_that_rewrites_host_the_forms_still_work(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    proxied = {"Origin": "https://relay.example.com", "X-Forwarded-Host": "relay.example.com"}
    answer = await visitor.post(
        "/console/providers/textly/configure", textly_form(), headers=proxied
    )
    assert answer.status_code == 303
    # without the forwarded host, the origin is refused, with its own message
    refused = await visitor.post(
        "/console/routing",
        {"capability": "send_sms", "integration_id": "x"},
        headers={"Origin": "https://relay.example.com"},
    )
    assert refused.status_code == 403
    assert "sent from another site" in refused.text


async def test_sign_out_ends_the_session_the_request_was_signed_in_with(console: Console) -> None:
    first, _, _ = await signed_in(console, "acme")
    second, _, _ = await signed_in(console, "globex")
    a = first.client.cookies["relaykit_session"]
    b = second.client.cookies["relaykit_session"]
    tossed = console.visitor()
    headers = {"Cookie": f"relaykit_session={a}; relaykit_session={b}"}
    page = await tossed.client.get("/console/", headers=headers)
    csrf = CSRF_FIELD.search(page.text)
    assert csrf is not None and csrf.group(1) == first.csrf  # the first cookie is the session
    await tossed.client.post("/console/sign-out", data={"csrf_token": first.csrf}, headers=headers)
    assert await console.api.services.sessions.find(a) is None
    assert await console.api.services.sessions.find(b) is not None


async def test_signing_in_again_ends_the_browsers_old_session(console: Console) -> None:
    visitor, _, token = await signed_in(console)
    old = visitor.client.cookies["relaykit_session"]
    await visitor.get("/console/sign-in")  # signed in: sent on
    visitor.client.cookies.clear()
    visitor.client.cookies.set("relaykit_session", old)
    visitor.client.cookies.set("relaykit_sign_in", "n" * 43)
    answer = await visitor.post(
        "/console/sign-in", {"token": token, "csrf_token": "n" * 43}, csrf=False
    )
    assert answer.status_code == 303
    assert await console.api.services.sessions.find(old) is None
    assert session_count(console.api) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/console/providers"),
        ("GET", "/console/integrations"),
        ("GET", "/console/routing/abc/x"),
        ("GET", "/console/sign-out"),
        ("POST", "/console/nope"),
        ("DELETE", "/console/"),
    ],
)
async def test_paths_no_console_route_takes_are_pages_with_the_headers(
    console: Console, method: str, path: str
) -> None:
    visitor = console.visitor()
    answer = await visitor.client.request(method, path, follow_redirects=False)
    assert answer.status_code in (404, 405), answer.status_code
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    # the API's own answers stay JSON
    api = await visitor.client.request(method, "/api/v1/nope")
    assert api.headers["content-type"].startswith("application/json")


async def test_static_files_carry_the_headers(console: Console) -> None:
    answer = await console.visitor().get("/console/static/console.css")
    assert answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("page", ["²", "\u0661", "1_0", "-1", "99999999999"])
async def test_odd_page_numbers_are_refused_not_a_server_error(console: Console, page: str) -> None:
    visitor, _, _ = await signed_in(console)
    answer = await visitor.get("/console/delivery-attempts", params={"page": page})
    assert answer.status_code == 422
    assert 'id="page-error"' in answer.text


async def test_numbers_are_ascii_digits_only(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    first = await configure(visitor)
    answer = await visitor.post(
        "/console/routing",
        {"capability": "send_sms", "integration_id": first, "priority": "\u0661\u0662"},
    )
    assert answer.status_code == 422
    assert "The priority field must be an integer." in answer.text


async def test_metadata_errors_stay_beside_their_own_row(console: Console) -> None:
    visitor, _, _ = await signed_in(console)
    await visitor.get("/console/providers/textly/configure")
    answer = await visitor.post(
        "/console/providers/textly/configure",
        textly_form(
            **{
                "meta-rows": "4",
                "meta-key-0": "",
                "meta-value-0": "",
                "meta-key-1": "a",
                "meta-value-1": "1",
                "meta-key-2": "",
                "meta-value-2": "orphan value",
                "meta-key-3": "b",
                "meta-value-3": "2",
            }
        ),
    )
    assert answer.status_code == 422
    row = re.search(r'<input id="meta-value-2"[^>]*>', answer.text)
    assert row is not None and 'value="orphan value"' in row.group(0)
    assert 'id="meta-key-2-error">A value needs a key.' in answer.text
    key = re.search(r'<input id="meta-key-2"[^>]*>', answer.text)
    assert key is not None and 'aria-invalid="true"' in key.group(0)


async def test_a_multi_line_metadata_value_comes_back_unchanged(console: Console) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    integration_id = await configure(visitor)
    await console.api.services.integrations.update(
        tenant_id, integration_id, {"metadata": {"notes": "line one\nline two", " spaced ": "x"}}
    )
    edit = await visitor.get(f"/console/integrations/{integration_id}/edit")
    # what a browser sends back for the form as shown, with one field changed
    fields = dict(
        re.findall(
            r'<input id="(meta-[a-z]+-\d+)" name="[^"]+" type="text" value="([^"]*)"', edit.text
        )
    )
    kinds = dict(re.findall(r'name="(meta-kind-\d+)" value="([a-z]+)"', edit.text))
    sent = {name: html.unescape(value) for name, value in fields.items()}
    answer = await visitor.post(
        f"/console/integrations/{integration_id}/edit",
        {
            **textly_form(**{"cred-auth_token": "", "cred-account_sid": "AC777"}),
            "meta-rows": edit.text.split('name="meta-rows" value="')[1].split('"')[0],
            **sent,
            **kinds,
        },
    )
    assert answer.status_code == 303, answer.text
    view = await console.api.services.integrations.get(tenant_id, integration_id)
    assert view.metadata["notes"] == "line one\nline two"
    assert view.metadata[" spaced "] == "x"
    assert view.credentials["account_sid"] == "AC777"


SECRET_FLAG = msgspec.structs.replace(
    MESSAGING,
    name="flagged",
    display_name="Flagged",
    credential_schema={
        **MESSAGING.credential_schema,
        "sandbox": CredentialField(type="boolean", sensitive=True, required=False),
    },
)


async def test_a_sensitive_checkbox_is_kept_unless_a_choice_is_made(
    settings: Settings, tmp_path: Path
) -> None:
    class Flagged:
        @hookimpl
        def relaykit_providers(self) -> list[Provider]:
            return [SECRET_FLAG]

    plugins = make_plugin_manager(load_entrypoints=False, plugins=[("flagged", Flagged())])
    app = create_app(settings, plugin_manager=plugins)
    async with AsyncTestClient(app=app) as client:
        database = open_database(settings, migrate=False)
        try:
            console = Console(Api(client, database))
            visitor, tenant_id, _ = await signed_in(console)
            integration_id = await configure(visitor, "flagged", **{"cred-sandbox": "on"})
            services = console.api.services

            async def sandbox() -> Any:
                blob = database.read_blocking(
                    lambda conn: conn.execute(
                        sa.select(integrations.c.sealed_credentials).where(
                            integrations.c.id == integration_id
                        )
                    ).scalar_one()
                )
                opened = await open_sealed(
                    services.key_provider, tenant_id, integration_id, "flagged", blob
                )
                return opened.get("sandbox")

            assert await sandbox() is True
            edit = await visitor.get(f"/console/integrations/{integration_id}/edit")
            assert '<select id="cred-sandbox" name="cred-sandbox"' in edit.text
            same = await visitor.post(
                f"/console/integrations/{integration_id}/edit",
                textly_form(**{"cred-auth_token": "", "cred-sandbox": ""}),
            )
            assert same.headers["location"].endswith("?done=unchanged")
            assert await sandbox() is True
            off = await visitor.post(
                f"/console/integrations/{integration_id}/edit",
                textly_form(**{"cred-auth_token": "", "cred-sandbox": "false"}),
            )
            assert off.headers["location"].endswith("?done=updated")
            assert await sandbox() is False
        finally:
            database.dispose()


async def test_an_integration_whose_provider_is_gone_is_still_listed(
    console: Console, settings: Settings
) -> None:
    visitor, tenant_id, _ = await signed_in(console)
    integration_id = await configure(visitor, "chatter")
    # the same database, served by an app without that provider's plugin
    plugins = make_plugin_manager(load_entrypoints=False, plugins=[("evil", EvilProviders())])
    app = create_app(settings, plugin_manager=plugins)
    async with AsyncTestClient(app=app) as client:
        other = Visitor(client)
        _, token = console.tenant("initech")
        del token
        other.client.cookies.set("relaykit_session", visitor.client.cookies["relaykit_session"])
        page = await other.get("/console/")
        assert f'href="/console/integrations/{integration_id}"' in page.text
        assert "Integrations of providers not installed" in page.text
        detail = await other.get(f"/console/integrations/{integration_id}")
        assert detail.status_code == 200 and "is not installed on this server" in detail.text
    assert tenant_id
