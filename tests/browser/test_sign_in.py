"""Signing in to the console and out of it, in a browser: a tenant's API token is the
password; the session it opens lives in an HttpOnly, SameSite=Strict cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from .conftest import Console, as_phone, horizontal_overflow, shot, sign_in, wait

SIGN_IN = "/console/sign-in"
# The sign-out form sits in the page's header beside the <nav>, not inside it.
SIGN_OUT_BUTTON = "//header//form//button[normalize-space()='Sign out']"


def path_of(driver: WebDriver) -> str:
    return urlsplit(driver.current_url).path


def heading(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def test_the_token_signs_in_to_the_providers_page(
    shared_console: Console, browser: WebDriver
) -> None:
    browser.get(shared_console.url(SIGN_IN))
    field = browser.find_element(By.ID, "token")
    assert field.get_attribute("type") == "password"
    assert field.get_attribute("name") == "token"
    shot(browser, "sign-in")

    sign_in(browser, shared_console.base_url, shared_console.token)

    assert path_of(browser) == "/console/"
    assert heading(browser) == "Providers"
    assert browser.find_element(By.XPATH, SIGN_OUT_BUTTON).is_displayed()
    shot(browser, "providers")


def test_a_wrong_token_stays_on_sign_in_with_an_alert(
    shared_console: Console, browser: WebDriver
) -> None:
    sign_in(browser, shared_console.base_url, "rk_not_a_token")

    assert path_of(browser) == SIGN_IN
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert alert.is_displayed()
    assert "not accepted" in alert.text.lower(), alert.text
    assert browser.get_cookie("relaykit_session") is None
    shot(browser, "sign-in-refused")
    # and it opened no session
    browser.get(shared_console.url("/console/"))
    assert path_of(browser) == SIGN_IN


def test_signing_out_ends_the_session(shared_console: Console, browser: WebDriver) -> None:
    sign_in(browser, shared_console.base_url, shared_console.token)
    assert heading(browser) == "Providers"
    session = browser.get_cookie("relaykit_session")
    assert session is not None

    button = browser.find_element(By.XPATH, SIGN_OUT_BUTTON)
    button.click()
    wait(browser).until(ec.staleness_of(button))

    assert path_of(browser) == SIGN_IN
    assert browser.find_element(By.ID, "token").is_displayed()
    browser.get(shared_console.url("/console/"))
    assert path_of(browser) == SIGN_IN
    # the old session's cookie, put back, opens nothing: the session ended on the server
    browser.add_cookie({k: v for k, v in session.items() if k != "expiry"})
    browser.get(shared_console.url("/console/"))
    assert path_of(browser) == SIGN_IN


def test_the_session_cookie_is_httponly_and_samesite_strict(
    shared_console: Console, browser: WebDriver
) -> None:
    sign_in(browser, shared_console.base_url, shared_console.token)
    cookie = browser.get_cookie("relaykit_session")

    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert shared_console.token not in cookie["value"]
    assert browser.execute_script("return document.cookie").find("relaykit_session") == -1


def test_each_tenant_signs_in_with_its_own_token(
    shared_console: Console, browser: WebDriver
) -> None:
    sign_in(browser, shared_console.base_url, shared_console.other_token)
    assert path_of(browser) == "/console/"
    assert heading(browser) == "Providers"


def test_sign_in_and_providers_read_at_390_px(shared_console: Console, browser: WebDriver) -> None:
    as_phone(browser)
    browser.get(shared_console.url(SIGN_IN))
    assert browser.execute_script("return innerWidth") == 390
    assert horizontal_overflow(browser) == 0
    shot(browser, "phone-sign-in")

    sign_in(browser, shared_console.base_url, shared_console.token)
    assert heading(browser) == "Providers"
    assert horizontal_overflow(browser) == 0
    assert browser.find_element(By.XPATH, SIGN_OUT_BUTTON).is_displayed()
    shot(browser, "phone-providers")
