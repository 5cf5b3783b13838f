"""The browser tests' own harness: Chromium starts and is handed over clean, the phone is
390 px wide, screenshots land where they should, and the console fixture's server answers
the browser with both tenants' tokens working. Independent of what the console shows."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import DESKTOP, SCREENSHOTS, Console, as_phone, horizontal_overflow, shot

PAGE = "data:text/html,<title>harness</title><h1>harness</h1>"
PHONE_PAGE = (
    "data:text/html,<meta name='viewport' content='width=device-width, initial-scale=1'>"
    "<h1>phone</h1>"
)


def test_a_desktop_window_with_no_implicit_wait(browser: WebDriver) -> None:
    browser.get(PAGE)
    assert browser.find_element(By.TAG_NAME, "h1").text == "harness"
    assert browser.execute_script("return innerWidth") == DESKTOP[0]
    assert browser.timeouts.implicit_wait == 0
    path = shot(browser, "harness/desktop")
    assert path.parent == SCREENSHOTS
    assert path.read_bytes().startswith(b"\x89PNG")


def test_the_phone_is_390_wide(phone: WebDriver) -> None:
    phone.get(PHONE_PAGE)
    assert phone.execute_script("return [innerWidth, innerHeight]") == [390, 844]
    assert horizontal_overflow(phone) == 0
    phone.get(
        PHONE_PAGE.replace(
            "<h1>phone</h1>", "<body style='margin:0'><div style='width:600px'>wide</div>"
        )
    )
    assert horizontal_overflow(phone) == 600 - 390


def test_each_test_gets_the_desktop_back_and_no_cookies(
    shared_console: Console, browser: WebDriver
) -> None:
    # a cookie left on 127.0.0.1 by an earlier test (cookies ignore the port) would show here
    browser.get(f"{shared_console.base_url}/health")
    assert browser.get_cookies() == []
    assert browser.execute_script("return innerWidth") == DESKTOP[0]
    browser.add_cookie({"name": "left_behind", "value": "1"})
    as_phone(browser)


def test_the_console_server_answers_with_both_tokens(console: Console, browser: WebDriver) -> None:
    browser.get(f"{console.base_url}/health")
    assert browser.get_cookies() == []  # the previous test's cookie is gone
    assert "ok" in browser.find_element(By.TAG_NAME, "body").text.lower()
    for token in (console.token, console.other_token):
        answer = httpx.get(
            f"{console.base_url}/api/v1/integrations",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    assert console.token != console.other_token
    assert console.log.exists()
    assert console.env["RELAYKIT_STRIPE_API_BASE"] == console.stripe.base_url
