"""Every console page read on a desktop (1280x800) and on a phone (390x844): the document
never scrolls sideways, every visible input and select has a label, every label and
description names an element that exists; and the console can be signed in to with the
keyboard alone. Screenshots: ``layout-<desktop|phone>-<page>.png``.

One server for the module, tenant ``acme`` with Twilio active, a default rule for
``send_sms`` and one SMS sent (so the integration, routing and attempts pages have rows),
Stripe in ``error`` (a key the stand-in refuses: the page with Stripe's message), and Plivo
left unconfigured for its configure form. Nothing here changes any of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from ._helpers import (
    BrowserLog,
    api,
    broken_references,
    configure_by_api,
    data_of,
    gone,
    heading,
    loaded,
    path_of,
    sideways_scroll,
    sign_in,
    unattached_errors,
    unlabelled_controls,
    wait_until,
    wider_than_viewport,
)
from .conftest import DESKTOP, PHONE, Console, as_phone, running_console, shot, wait

pytestmark = pytest.mark.slow

SIZES = {"desktop": DESKTOP, "phone": PHONE}


@dataclass
class Site:
    console: Console
    twilio: str
    stripe: str

    def paths(self) -> dict[str, str]:
        integration = f"/console/integrations/{self.twilio}"
        return {
            "sign-in": "/console/sign-in",
            "providers": "/console/",
            "configure": "/console/providers/plivo/configure",
            "integration": integration,
            "integration-error": f"/console/integrations/{self.stripe}",
            "edit": f"{integration}/edit",
            "confirm": f"{integration}/disable",
            "routing": "/console/routing",
            "attempts": "/console/delivery-attempts",
        }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("layout")
    with running_console(folder, f"sqlite:///{folder / 'relaykit.sqlite3'}") as console:
        with api(console) as client:
            twilio = configure_by_api(
                client,
                "twilio",
                {
                    "account_sid": "ACa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
                    "auth_token": "layout-twilio-token",
                    "from_number": "+15550100000",
                },
                ["send_sms", "send_whatsapp"],
            )
            data_of(
                client.post(
                    "/routing-rules",
                    json={"capability": "send_sms", "integration_id": twilio, "is_default": True},
                ),
                201,
            )
            data_of(
                client.post(
                    "/operations/send_sms",
                    json={"to": "+14155552345", "body": "Your code is 123456"},
                ),
                201,
            )
            stripe = data_of(
                client.post(
                    "/integrations",
                    json={
                        "provider": "stripe",
                        "credentials": {
                            "publishable_key": "pk_test_layout",
                            "secret_key": "sk_test_bad_layout_key_refused_by_stripe",
                        },
                        "enabled_capabilities": ["initiate_payment"],
                    },
                ),
                201,
            )["id"]
            wait_until(client, stripe, "error")
        yield Site(console, twilio, stripe)


PAGES = [
    "sign-in",
    "providers",
    "configure",
    "integration",
    "integration-error",
    "edit",
    "confirm",
    "routing",
    "attempts",
]

#: Cases found not to meet the checks (``<size>-<page>``, ``<size>-<form>-refused``) -> the
#: console bug, as reported to the console's owner. Each is expected to fail, strictly: once
#: the console is fixed it passes, and its entry must go.
KNOWN_BUGS: dict[str, str] = {}


def known_bug(case: str) -> list[pytest.MarkDecorator]:
    bug = KNOWN_BUGS.get(case)
    return [] if bug is None else [pytest.mark.xfail(strict=True, reason=f"console bug: {bug}")]


def cases() -> list[object]:
    return [
        pytest.param(page, size, id=f"{size}-{page}", marks=known_bug(f"{size}-{page}"))
        for size in SIZES
        for page in PAGES
    ]


@pytest.mark.parametrize(("page", "size"), cases())
def test_the_page_fits_and_every_control_is_labelled(
    site: Site, browser: WebDriver, page: str, size: str
) -> None:
    width, _ = SIZES[size]
    if size == "phone":
        as_phone(browser)
    log = BrowserLog(browser)
    if page != "sign-in":
        sign_in(browser, site.console.base_url, site.console.token)
    path = site.paths()[page]
    browser.get(site.console.url(path))
    loaded(browser)
    assert path_of(browser) == path, "the page redirected elsewhere"
    assert heading(browser)
    shot(browser, f"layout-{size}-{page}")

    assert browser.execute_script("return window.innerWidth") == width
    scroll = sideways_scroll(browser)
    assert scroll is None, (
        f"{page} scrolls sideways at {width} px: {scroll}; too wide: "
        + ", ".join(wider_than_viewport(browser))
    )
    assert unlabelled_controls(browser) == []
    assert broken_references(browser) == []
    log.assert_clean()


@pytest.mark.parametrize("size", list(SIZES))
def test_signing_in_with_the_keyboard_alone(site: Site, browser: WebDriver, size: str) -> None:
    """From the sign-in page, Tab reaches the token input (after the skip link and the
    brand), its focus is visible, the token typed and Enter submits; then Tab reaches
    "Configure Plivo" and Enter opens its form. No click, no element handed a key."""
    if size == "phone":
        as_phone(browser)
    browser.get(site.console.url("/console/sign-in"))
    loaded(browser)
    keys = ActionChains(browser)

    def focused() -> dict[str, str]:
        return dict(
            browser.execute_script(
                "const e = document.activeElement;"
                "return {tag: e.tagName.toLowerCase(), id: e.id || '',"
                " text: (e.textContent || '').trim().slice(0, 40),"
                " outline: getComputedStyle(e).outlineStyle};"
            )
        )

    stops = []
    for _ in range(10):
        keys.send_keys(Keys.TAB).perform()
        now = focused()
        stops.append(now["id"] or now["text"] or now["tag"])
        if now["id"] == "token":
            break
    assert stops[-1] == "token", f"Tab never reached the token input: {stops}"
    assert stops[0] == "Skip to the content", stops
    assert focused()["outline"] != "none", "the focused input shows no outline"
    shot(browser, f"layout-{size}-keyboard-sign-in")

    keys.send_keys(site.console.token, Keys.ENTER).perform()
    wait(browser).until(lambda d: path_of(d) == "/console/")
    loaded(browser)
    assert heading(browser) == "Providers"

    for _ in range(30):
        keys.send_keys(Keys.TAB).perform()
        if focused()["text"] == "Configure Plivo":
            break
    else:
        raise AssertionError("Tab never reached Configure Plivo")
    shot(browser, f"layout-{size}-keyboard-providers")
    keys.send_keys(Keys.ENTER).perform()
    wait(browser).until(lambda d: path_of(d) == "/console/providers/plivo/configure")
    loaded(browser)
    assert heading(browser) == "Configure Plivo"
    shot(browser, f"layout-{size}-keyboard-configure")


# -- a form shown again with its errors ---------------------------------------------------------

#: Each form, what to type in it to be refused (field id -> text; the last one is submitted
#: with Enter, so no click is needed at the phone size), and the input the message is about.
FORMS = {
    # Plivo's sender number is not E.164
    "configure": (
        "/console/providers/plivo/configure",
        {
            "cred-auth_id": "MALAYOUT",
            "cred-auth_token": "layout-plivo-token",
            "cred-from_number": "555-0100",
        },
        "cred-from_number",
    ),
    # a priority beyond the API's ±1,000,000, in the New rule form of send_whatsapp
    "routing": (
        "/console/routing",
        {"new-send_whatsapp-priority": "2000000"},
        "new-send_whatsapp-priority",
    ),
    # an operation id that is not one
    "attempts": (
        "/console/delivery-attempts",
        {"filter-operation": "not-an-operation"},
        "filter-operation",
    ),
}


def form_cases() -> list[object]:
    return [
        pytest.param(form, size, id=f"{size}-{form}", marks=known_bug(f"{size}-{form}-refused"))
        for size in SIZES
        for form in FORMS
    ]


@pytest.mark.parametrize(("form", "size"), form_cases())
def test_a_form_shown_again_with_its_errors_fits_and_ties_each_message_to_its_field(
    site: Site, browser: WebDriver, form: str, size: str
) -> None:
    path, typed, about = FORMS[form]
    width, _ = SIZES[size]
    if size == "phone":
        as_phone(browser)
    log = BrowserLog(browser)
    sign_in(browser, site.console.base_url, site.console.token)
    browser.get(site.console.url(path))
    loaded(browser)
    last = None
    for field_id, text in typed.items():
        last = browser.find_element(By.ID, field_id)
        last.clear()
        last.send_keys(text)
    assert last is not None
    last.send_keys(Keys.ENTER)
    wait(browser).until(gone(last))
    loaded(browser)
    shot(browser, f"layout-{size}-{form}-refused")
    browser.execute_script(
        "arguments[0].scrollIntoView({block: 'center'})", browser.find_element(By.ID, about)
    )
    shot(browser, f"layout-{size}-{form}-refused-field")

    field = browser.find_element(By.ID, about)
    assert field.get_attribute("aria-invalid") == "true"
    messages = browser.find_elements(By.CSS_SELECTOR, ".field-error")
    assert any(message.is_displayed() and message.text for message in messages)
    assert browser.execute_script("return window.innerWidth") == width
    assert sideways_scroll(browser) is None, wider_than_viewport(browser)
    assert unlabelled_controls(browser) == []
    assert broken_references(browser) == []
    assert unattached_errors(browser) == []
    log.assert_clean()
