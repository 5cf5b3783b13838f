"""The browser console (/console/) driven as a person would: Selenium and Debian's Chromium.

Selenium drives the Chromium and chromedriver that Debian packages (``apt-get install
chromium chromium-driver``): both come from the distribution's own registry, so nothing is
downloaded at test time. Their paths are always given (``Service(executable_path=...)`` and
``binary_location``), so Selenium Manager, which would otherwise try to download a browser
and a driver, never runs. ``RELAYKIT_CHROMIUM`` and ``RELAYKIT_CHROMEDRIVER`` name others.

Without them every test here is skipped with a warning that says what to install, except in
CI (``CI=true``), where a missing browser fails the session: a green run that drove no
browser would hide that the console was never looked at.

Fixtures and helpers:

* ``browser``: one headless Chromium for the session (starting one costs ~1.2 s), handed to
  each test with no cookies, a blank page and a 1280x800 window; a fresh one if a test left
  it dead. Implicit wait 0: a test waits for what it means (``WebDriverWait``).
* ``phone``: the same browser as a 390x844 phone (a mobile viewport, which honours the
  page's ``<meta name="viewport">``), for the console read at 390 px wide; ``as_phone`` does
  the same to a browser mid-test.
* ``console``: the real server (``relaykit serve``) with its worker, Stripe, Twilio and
  Plivo answered by the local stand-ins, a tenant ``acme`` and a tenant ``globex``, each with
  a token made by the CLI. One per test, on the test's own throwaway database (~9 s to set
  up: five Python processes). ``shared_console``: the same, one per module, for tests that
  change nothing another could see.
* ``shot(driver, name)``: a PNG screenshot into ``$RELAYKIT_SCREENSHOTS`` (default
  tests/browser/screenshots, ignored by git): screenshots are test artifacts.
* ``sign_in(driver, base_url, token)``: the console's sign-in form, filled and submitted.
* A failing test leaves ``<test>-failed.png`` and ``<test>-failed.html`` (the page source)
  in the same folder.

Run by the tox env ``browser``; the ``integration`` and ``postgres`` envs pass
``--ignore=tests/browser``, and an env without Selenium does not collect this folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_all
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from relaykit.testing.standin import StandIn, stand_in

from ..conftest import REPO, Server, cli_env, run_cli, start_server, stop_server
from ..messaging_standin import Messaging
from ..stripe_standin import StripeBehaviour

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

if find_spec("selenium") is None:
    collect_ignore_glob = ["test_*.py"]

CHROMIUM = os.environ.get("RELAYKIT_CHROMIUM") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("RELAYKIT_CHROMEDRIVER") or "/usr/bin/chromedriver"
INSTALL = "apt-get install chromium chromium-driver"
SCREENSHOTS = Path(os.environ.get("RELAYKIT_SCREENSHOTS") or REPO / "tests/browser/screenshots")

DESKTOP = (1280, 800)
PHONE = (390, 844)

# What lets Chromium run here: as root (--no-sandbox), with no screen (--headless=new, no
# GPU), in a container with a small /dev/shm (--disable-dev-shm-usage), and with no
# network but loopback (nothing in the background reaching out: updates, sync, QUIC probes).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
)


def missing_binaries() -> list[str]:
    return [
        f"{what} ({path})"
        for what, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER))
        if not (os.path.isfile(path) and os.access(path, os.X_OK))
    ]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(item.path).parents]
    missing = missing_binaries()
    if not ours or not missing:
        return
    message = (
        f"the browser tests need {' and '.join(missing)}: install them with `{INSTALL}` "
        "(or name others with RELAYKIT_CHROMIUM and RELAYKIT_CHROMEDRIVER)"
    )
    if os.environ.get("CI") == "true":
        pytest.exit(f"CI: {message}", returncode=1)
    warnings.warn(pytest.PytestWarning(f"skipping: {message}"), stacklevel=1)
    skip = pytest.mark.skip(reason=message)
    for item in ours:
        item.add_marker(skip)


# -- the browser ----------------------------------------------------------------------------


def start_chromium(profile: Path) -> WebDriver:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    return driver


class Chromium:
    """One Chromium for the session, started when a test first asks for it, started again
    if a test left it unable to answer."""

    def __init__(self) -> None:
        self.driver: WebDriver | None = None
        self.profile: Path | None = None

    def get(self) -> WebDriver:
        if self.driver is not None:
            try:
                self.driver.execute_script("return 1")
            except Exception:
                self.quit()
        if self.driver is None:
            self.profile = Path(tempfile.mkdtemp(prefix="relaykit-chromium-"))
            self.driver = start_chromium(self.profile)
        return self.driver

    def reset(self) -> None:
        """As a new browser: no cookies, nothing cached, one blank page, the desktop window
        (or no browser, if it would not: the next test gets a new one). Cookies are per
        host, not per port: each test's server on 127.0.0.1 would otherwise get the last
        one's. Storage is per origin, and each test's server has a port of its own."""
        driver = self.driver
        if driver is None:
            return
        try:
            driver.get("about:blank")
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
            driver.execute_cdp_cmd("Network.clearBrowserCache", {})
            for handle in driver.window_handles[1:]:
                driver.switch_to.window(handle)
                driver.close()
            driver.switch_to.window(driver.window_handles[0])
            driver.set_window_size(*DESKTOP)
        except Exception:
            self.quit()

    def quit(self) -> None:
        if self.driver is not None:
            with suppress(Exception):  # a dead browser is being thrown away anyway
                self.driver.quit()
            self.driver = None
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    held = Chromium()
    try:
        yield held
    finally:
        held.quit()


@pytest.fixture
def browser(chromium: Chromium) -> Iterator[WebDriver]:
    # Reset after each test, not before: a failing test's page is still there for the
    # screenshot taken when it is reported.
    try:
        yield chromium.get()
    finally:
        chromium.reset()


def as_phone(driver: WebDriver) -> WebDriver:
    """Make ``driver`` a 390x844 phone: a mobile viewport of that size (the page's
    ``<meta name="viewport">`` decides its layout width, as on a phone). The next test gets
    the desktop window back. Reload or navigate after calling it."""
    width, height = PHONE
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True},
    )
    return driver


@pytest.fixture
def phone(browser: WebDriver) -> WebDriver:
    return as_phone(browser)


def horizontal_overflow(driver: WebDriver) -> int:
    """How many CSS pixels the page is wider than its viewport (0: nothing to scroll
    sideways to read)."""
    return int(
        driver.execute_script(
            "const d = document.documentElement;"
            "return Math.max(d.scrollWidth, document.body ? document.body.scrollWidth : 0)"
            " - d.clientWidth;"
        )
    )


def shot(driver: WebDriver, name: str) -> Path:
    """Save what the browser shows as ``<name>.png`` in the screenshots folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{safe_name(name)}.png"
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"could not save a screenshot to {path}")
    return path


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "screenshot"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test leaves what the browser showed, and the page's source, named after it."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "teardown" or not report.failed:
        return
    driver = getattr(item, "funcargs", {}).get("browser")
    if driver is None:
        return
    name = safe_name(f"{item.nodeid.split('::', 1)[-1]}-failed")
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        (SCREENSHOTS / f"{name}.html").write_text(
            f"<!-- {driver.current_url} -->\n{driver.page_source}"
        )
        report.sections.append(("browser", f"screenshot and page source: {SCREENSHOTS}/{name}.*"))
    except Exception as error:
        report.sections.append(("browser", f"no screenshot: {error!r}"))


# -- the console ----------------------------------------------------------------------------


@dataclass
class Console:
    """The running server and what it was set up with."""

    server: Server
    base_url: str
    token: str  # tenant acme's
    other_token: str  # tenant globex's
    stripe: StandIn
    messaging: StandIn  # Twilio's and Plivo's APIs
    env: dict[str, str]
    log: Path

    def url(self, path: str = "/console/") -> str:
        return f"{self.base_url}{path}"


def token_for(env: dict[str, str], tenant: str) -> str:
    return run_cli(["tokens", "create", "--tenant", tenant], env).stdout.strip().splitlines()[-1]


def new_token(env: dict[str, str], tenant: str) -> str:
    run_cli(["tenants", "create", tenant], env)
    return token_for(env, tenant)


@contextmanager
def running_console(folder: Path, database_url: str | None = None) -> Iterator[Console]:
    """The server, its stand-ins and two tenants' tokens, in ``folder``; everything stopped
    after. ``database_url``: the database (else the test's own, or SQLite in ``folder``)."""
    with stand_in(StripeBehaviour()) as stripe, stand_in(Messaging()) as messaging:
        extra = {
            "RELAYKIT_STRIPE_API_BASE": stripe.base_url,
            "RELAYKIT_TWILIO_API_BASE": messaging.base_url,
            "RELAYKIT_PLIVO_API_BASE": messaging.base_url,
        }
        if database_url is not None:
            extra["RELAYKIT_DATABASE_URL"] = database_url
        env = cli_env(folder / "home", extra)
        log = folder / "server.log"
        # Each CLI call is a Python process of ~2.5 s on these machines: the first makes the
        # database, then the others and the server start side by side (SQLite's writers
        # queue on its busy timeout). 12 s down to 9 s.
        run_cli(["tenants", "create", "acme"], env)
        with ThreadPoolExecutor(3) as pool:
            starting = pool.submit(start_server, env, log)
            tokens = [pool.submit(token_for, env, "acme"), pool.submit(new_token, env, "globex")]
            wait_for_all([starting, *tokens])
        server = starting.result()
        try:
            token, other_token = (made.result() for made in tokens)
            yield Console(server, server.base_url, token, other_token, stripe, messaging, env, log)
        finally:
            stop_server(server)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """A console of the test's own, on the test's own database: for a test that changes
    what the tenants have (integrations, rules, tokens)."""
    with running_console(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One console for every test of a module (~9 s saved a test): for tests that change
    nothing a later one could see, as signing in and out."""
    folder = tmp_path_factory.mktemp("console")
    # Named here: the per-test ``database_url`` fixture is not active when this is built.
    with running_console(folder, f"sqlite:///{folder / 'relaykit.sqlite3'}") as running:
        yield running


#: What chromedriver (156) sometimes answers, instead of "stale element reference", when
#: asked about an element of a page the browser has just left: the node is not in the
#: document now shown. Selenium's ``staleness_of`` lets it through as an error.
LEFT_THE_DOCUMENT = "does not belong to the document"


def page_replaced(element: Any) -> Any:
    """A wait condition: ``element``'s page has been replaced (``staleness_of``, with
    chromedriver's other way of saying so, which ``staleness_of`` lets through as an
    error about one time in three)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def check(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if LEFT_THE_DOCUMENT in str(error.msg):
                return True
            raise
        return False

    return check


def sign_in(driver: WebDriver, base_url: str, token: str, *, timeout: float = 10) -> None:
    """Open the console's sign-in page, submit ``token``, and wait for the page that follows
    to load (wherever it is: a test checks where it landed)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base_url}/console/sign-in")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    button = driver.find_element(By.CSS_SELECTOR, "button[type=submit]")
    button.click()
    WebDriverWait(driver, timeout).until(page_replaced(button))
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def wait(driver: WebDriver, timeout: float = 10) -> Any:
    """``WebDriverWait(driver, timeout)``: ``wait(driver).until(...)``."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout)
