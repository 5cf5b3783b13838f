"""What the console's flow and layout tests share: moving through the console as a person
does (links, forms, buttons), reading what a page says, the API beside it (httpx with the
tenant's bearer token), what the browser reported (console errors, CSP violations), the
checks every page is held to (no sideways scroll, every control labelled), and a console
whose server also has a third party's provider installed (``relaykit new-provider``'s
scaffold, built into a private site folder on its ``PYTHONPATH``).

Nothing here edits the conftest: it builds on its fixtures and helpers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select

from relaykit.testing.standin import StandIn, StandInRequest, stand_in

from ..conftest import cli_env, pip_install_into, run_cli, start_server, stop_server
from .conftest import LEFT_THE_DOCUMENT, Console, page_replaced, shot, wait

#: How long an integration may take to be verified in these tests (the brief: ~20 s).
VERIFY_TIMEOUT = 20.0


# -- where the browser is, what the page says ----------------------------------------------------


def path_of(driver: WebDriver) -> str:
    return urlsplit(driver.current_url).path


def heading(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def loaded(driver: WebDriver, timeout: float = 10) -> None:
    wait(driver, timeout).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


gone = page_replaced


def follow(driver: WebDriver, element: WebElement, timeout: float = 10) -> None:
    """Click ``element`` (a link or a submit button) and wait for the page it leads to."""
    element.click()
    wait(driver, timeout).until(gone(element))
    loaded(driver, timeout)


def sign_in(driver: WebDriver, base_url: str, token: str, *, timeout: float = 10) -> None:
    """The conftest's ``sign_in`` (the sign-in page, the token submitted, the next page
    waited for), waiting with :func:`gone`: the conftest's ``staleness_of`` fails now and
    then with chromedriver's "Node with given id does not belong to the document" once the
    form has been sent."""
    driver.get(f"{base_url}/console/sign-in")
    fill(driver, "token", token)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "main button[type=submit]"), timeout)


def link(driver: WebDriver, text: str) -> WebElement:
    """The link whose text is ``text`` (visually hidden words included, as a screen reader
    reads it)."""
    return driver.find_element(
        By.XPATH, f"//a[normalize-space()={xpath_string(text)} or @aria-label={xpath_string(text)}]"
    )


def button(driver: WebDriver, text: str, within: WebElement | None = None) -> WebElement:
    """The button whose text is ``text`` (in ``within``, if given)."""
    xpath = f"//button[normalize-space()={xpath_string(text)}]"
    if within is not None:
        return within.find_element(By.XPATH, f".{xpath}")
    return driver.find_element(By.XPATH, xpath)


def xpath_string(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in parts) + ")"


def fill(driver: WebDriver, element_id: str, text: str) -> WebElement:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    if text:
        field.send_keys(text)
    return field


def choose(driver: WebDriver, element_id: str, visible_text_starts: str) -> None:
    """Pick the option of the select ``element_id`` whose text starts with the words given
    (the console's options read ``Twilio (active)``)."""
    select = Select(driver.find_element(By.ID, element_id))
    for option in select.options:
        if option.text.strip().startswith(visible_text_starts):
            select.select_by_visible_text(option.text)
            return
    raise AssertionError(
        f"no option starting {visible_text_starts!r} in #{element_id}: "
        f"{[o.text for o in select.options]}"
    )


def selected_text(driver: WebDriver, element_id: str) -> str:
    return str(Select(driver.find_element(By.ID, element_id)).first_selected_option.text)


def status_text(driver: WebDriver) -> str | None:
    """What ``#status`` says now (``None`` while the page is being replaced)."""
    try:
        return str(driver.find_element(By.ID, "status").text).strip()
    except (NoSuchElementException, StaleElementReferenceException):
        return None
    except WebDriverException as error:
        if LEFT_THE_DOCUMENT in str(error.msg):
            return None
        raise


def wait_for_status(driver: WebDriver, wanted: str, timeout: float = VERIFY_TIMEOUT) -> None:
    """Wait, without reloading, until the integration page's ``#status`` says ``wanted``:
    the page's own script polls and reloads it while the integration is pending."""
    try:
        wait(driver, timeout).until(
            lambda d: (
                status_text(d) == wanted
                and d.execute_script("return document.readyState") == "complete"
            )
        )
    except TimeoutException:
        raise AssertionError(
            f"#status did not say {wanted!r} within {timeout:g} s: it says {status_text(driver)!r}"
        ) from None


def integration_id_of(driver: WebDriver) -> str:
    """The id of the integration whose page the browser shows."""
    parts = path_of(driver).split("/")
    assert parts[:3] == ["", "console", "integrations"], driver.current_url
    return parts[3]


def field_error(driver: WebDriver, input_id: str, key: str | None = None) -> WebElement:
    """The message shown beside the input ``input_id``, after checking the input points at
    it: the ``.field-error`` ``#<key>-error`` (``key``: the input's id unless given), the
    input ``aria-invalid="true"`` and its ``aria-describedby`` naming the message."""
    error_id = f"{key or input_id}-error"
    message = driver.find_element(By.ID, error_id)
    assert "field-error" in (message.get_attribute("class") or "").split()
    assert message.is_displayed()
    assert str(message.text).strip()
    field = driver.find_element(By.ID, input_id)
    assert field.get_attribute("aria-invalid") == "true"
    described = (field.get_attribute("aria-describedby") or "").split()
    assert error_id in described, described
    return message


def audit_actions(driver: WebDriver) -> list[str]:
    """The actions the integration page's audit trail lists, newest first."""
    rows = driver.find_elements(
        By.CSS_SELECTOR, "section[aria-labelledby=audit-heading] tbody tr td:nth-child(2)"
    )
    return [str(row.text).strip() for row in rows]


def tries(driver: WebDriver, capability: str) -> list[str]:
    """The routing page's "An operation tries, in this order" list for ``capability``."""
    items = driver.find_elements(By.CSS_SELECTOR, f"#cap-{capability} ol.tries > li")
    return [" ".join(str(item.text).split()) for item in items]


class Secrets:
    """Secret values a test typed: none may ever come back in a page."""

    def __init__(self, *values: str) -> None:
        self.values = list(values)

    def add(self, value: str) -> str:
        self.values.append(value)
        return value

    def check(self, driver: WebDriver) -> None:
        source = driver.page_source
        for value in self.values:
            assert value not in source, f"a secret came back in {driver.current_url}"


class Tour:
    """A test's walk through the console: each page it stops at is screenshotted as
    ``<prefix>-<n>-<name>.png`` (in order), and held to the checks every page is: no secret
    typed so far in its source, no error in the browser's log."""

    def __init__(self, driver: WebDriver, prefix: str, secrets: Secrets | None = None) -> None:
        self.driver = driver
        self.prefix = prefix
        self.secrets = secrets or Secrets()
        self.count = 0
        self.log = BrowserLog(driver)

    def stop(self, name: str, *, show: str | None = None) -> None:
        """Screenshot the page (scrolled to the element ``show`` names, a CSS selector, when
        what the step is about is below the fold) and check it."""
        if show is not None:
            self.driver.execute_script(
                "arguments[0].scrollIntoView({block: 'start'})",
                self.driver.find_element(By.CSS_SELECTOR, show),
            )
        self.count += 1
        shot(self.driver, f"{self.prefix}-{self.count:02d}-{name}")
        self.secrets.check(self.driver)
        self.log.read()

    def sign_in(self, base_url: str, token: str) -> None:
        """The sign-in page (screenshotted), then the token submitted through it."""
        self.driver.get(f"{base_url}/console/sign-in")
        self.stop("sign-in")
        sign_in(self.driver, base_url, token)

    def done(self) -> None:
        self.log.assert_clean()


# -- the browser's own log -----------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    level: str
    source: str
    message: str

    @property
    def is_problem(self) -> bool:
        """A script error, a CSP violation, or ``console.error``: what the brief calls a
        JS error or a CSP violation. A page answered with 4xx (a form shown again with its
        errors: 422) is logged by Chromium as a failed load; that is the console's design,
        not a problem."""
        if self.level != "SEVERE":
            return False
        if self.source in ("javascript", "security", "console-api"):
            return True
        return "Content Security Policy" in self.message


class BrowserLog:
    """What Chromium logged. The conftest's driver has no ``goog:loggingPrefs``, and
    chromedriver then keeps the ``SEVERE`` entries only: script errors, ``console.error``
    and CSP violations, which is what is looked for (the warnings and info are not kept).
    Reading the log empties it, so this keeps what it read."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.entries: list[LogEntry] = []
        self.read()  # what an earlier test left is not this one's
        self.entries.clear()

    def read(self) -> list[LogEntry]:
        raw = self.driver.get_log("browser")
        new = [
            LogEntry(str(e.get("level")), str(e.get("source")), str(e.get("message"))) for e in raw
        ]
        self.entries.extend(new)
        return new

    def probe(self) -> bool:
        """Whether this browser's log is read at all: a ``console.error`` made here comes
        back (and is then forgotten, not being the page's)."""
        marker = "relaykit-log-probe"
        self.driver.execute_script("console.error(arguments[0])", marker)
        found = [entry for entry in self.read() if marker in entry.message]
        self.entries = [entry for entry in self.entries if marker not in entry.message]
        return bool(found)

    def problems(self) -> list[LogEntry]:
        self.read()
        return [entry for entry in self.entries if entry.is_problem]

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "the browser logged:\n" + "\n".join(
            f"{p.level} {p.source}: {p.message}" for p in problems
        )


# -- what every page is held to -------------------------------------------------------------------


def widths(driver: WebDriver) -> dict[str, int]:
    return {
        key: int(value)
        for key, value in driver.execute_script(
            "const d = document.documentElement;"
            "return {scrollWidth: d.scrollWidth, innerWidth: window.innerWidth,"
            " clientWidth: d.clientWidth,"
            " bodyScrollWidth: document.body ? document.body.scrollWidth : 0};"
        ).items()
    }


def sideways_scroll(driver: WebDriver) -> dict[str, int] | None:
    """The widths, if the document scrolls sideways: ``scrollWidth`` (the root's or the
    body's) beyond the window's ``innerWidth`` + 1, or beyond the layout viewport's
    ``clientWidth`` + 1. Both: under Chromium's mobile emulation a page wider than the phone
    is zoomed out to fit, and ``innerWidth`` grows with it (a 600 px page on a 390 px phone
    reads ``innerWidth`` 600), so ``innerWidth`` alone would let it pass."""
    seen = widths(driver)
    widest = max(seen["scrollWidth"], seen["bodyScrollWidth"])
    if widest > seen["innerWidth"] + 1 or widest > seen["clientWidth"] + 1:
        return seen
    return None


def wider_than_viewport(driver: WebDriver) -> list[str]:
    """The elements (not inside a sideways-scrolling region) whose right edge passes the
    viewport's: what makes a page scroll sideways, for the message."""
    return list(
        driver.execute_script(
            """
            const limit = document.documentElement.clientWidth + 1;
            const out = [];
            for (const el of document.body.querySelectorAll('*')) {
              const r = el.getBoundingClientRect();
              if (r.right <= limit || r.width === 0) continue;
              let p = el.parentElement, clipped = false;
              while (p && p !== document.body) {
                const s = getComputedStyle(p);
                if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) { clipped = true; break; }
                p = p.parentElement;
              }
              if (clipped) continue;
              const id = el.id ? '#' + el.id : '';
              const cls = el.className && typeof el.className === 'string'
                ? '.' + el.className.trim().split(/\\s+/).join('.') : '';
              out.push(el.tagName.toLowerCase() + id + cls + ' right=' + Math.round(r.right));
              if (out.length >= 8) break;
            }
            return out;
            """
        )
    )


UNLABELLED_JS = """
const out = [];
const visible = el => {
  const s = getComputedStyle(el);
  if (s.display === 'none' || s.visibility === 'hidden') return false;
  const r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
};
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden' || !visible(el)) continue;
  let label = null;
  if (el.id) {
    const labels = document.querySelectorAll('label[for="' + CSS.escape(el.id) + '"]');
    if (labels.length) label = Array.from(labels).map(l => l.textContent).join(' ');
  }
  const aria = (el.getAttribute('aria-label') || '').trim();
  if ((label === null || !label.trim()) && !aria) {
    out.push(el.outerHTML.slice(0, 160));
  }
}
return out;
"""

REFERENCES_JS = """
const out = [];
const counts = {};
for (const el of document.querySelectorAll('[id]')) counts[el.id] = (counts[el.id] || 0) + 1;
for (const [id, n] of Object.entries(counts)) if (n > 1) out.push('id ' + id + ' used ' + n + ' times');
for (const el of document.querySelectorAll('[aria-describedby], [aria-labelledby], label[for]')) {
  const names = [];
  for (const attr of ['aria-describedby', 'aria-labelledby']) {
    for (const ref of (el.getAttribute(attr) || '').split(/\\s+/)) if (ref) names.push([attr, ref]);
  }
  if (el.htmlFor) names.push(['for', el.htmlFor]);
  for (const [attr, ref] of names) {
    if (!document.getElementById(ref)) out.push(el.tagName.toLowerCase() + ' ' + attr + '=' + ref + ' names nothing');
  }
}
return out;
"""


ERRORS_JS = """
const out = [];
for (const message of document.querySelectorAll('.field-error:not([role=alert])')) {
  const text = message.textContent.trim().slice(0, 60);
  if (!message.id) { out.push('a message with no id: ' + text); continue; }
  const owners = document.querySelectorAll('[aria-describedby~="' + CSS.escape(message.id) + '"]');
  if (!owners.length) out.push('#' + message.id + ' (' + text + ') is named by no control');
}
for (const field of document.querySelectorAll('[aria-invalid=true]')) {
  const refs = (field.getAttribute('aria-describedby') || '').split(/\\s+/).filter(Boolean);
  const named = refs.some(ref => {
    const message = document.getElementById(ref);
    return message && message.classList.contains('field-error');
  });
  if (!named) out.push('#' + field.id + ' is aria-invalid but its aria-describedby names no message');
}
return out;
"""


def unattached_errors(driver: WebDriver) -> list[str]:
    """Messages beside a field (``.field-error``, not a form-wide ``role=alert`` one) that
    no control names in its ``aria-describedby``, and ``aria-invalid`` controls that name
    no message: what a screen reader would not read with the field."""
    return list(driver.execute_script(ERRORS_JS))


def unlabelled_controls(driver: WebDriver) -> list[str]:
    """Visible inputs, selects and text areas with neither a ``label[for=id]`` with words
    in it nor an ``aria-label``."""
    return list(driver.execute_script(UNLABELLED_JS))


def broken_references(driver: WebDriver) -> list[str]:
    """Ids used twice, and ``aria-describedby``/``aria-labelledby``/``label for`` naming
    no element: a label or a message that no assistive technology can find."""
    return list(driver.execute_script(REFERENCES_JS))


# -- the API beside the console --------------------------------------------------------------------


def api(console: Console | ScaffoldConsole, token: str | None = None) -> httpx.Client:
    """httpx with the tenant's bearer token, against the console's own server."""
    return httpx.Client(
        base_url=f"{console.base_url}/api/v1",
        headers={"Authorization": f"Bearer {token or console.token}"},
        timeout=15,
    )


def data_of(answer: httpx.Response, *statuses: int) -> Any:
    assert answer.status_code in (statuses or (200, 201)), (answer.status_code, answer.text)
    return answer.json()["data"]


def wait_until(client: httpx.Client, integration_id: str, status: str) -> dict[str, Any]:
    """The integration, once its verification has left it in ``status``."""
    deadline = time.monotonic() + VERIFY_TIMEOUT
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = data_of(client.get(f"/integrations/{integration_id}"))
        if view["status"] == status:
            return view
        assert view["status"] == "pending_verify", view
        time.sleep(0.1)
    raise AssertionError(f"not {status} after {VERIFY_TIMEOUT}s: {view}")


def configure_by_api(
    client: httpx.Client,
    provider: str,
    credentials: Mapping[str, Any],
    capabilities: Sequence[str],
) -> str:
    """An integration made through the API, once it is active; its id."""
    made = data_of(
        client.post(
            "/integrations",
            json={
                "provider": provider,
                "credentials": dict(credentials),
                "enabled_capabilities": list(capabilities),
            },
        ),
        201,
    )
    wait_until(client, made["id"], "active")
    return str(made["id"])


@contextmanager
def slower(standin: StandIn, seconds: float) -> Iterator[None]:
    """Every answer of ``standin`` delayed by ``seconds`` meanwhile: a verification then
    takes that long, so the page is seen while the integration is ``pending_verify``."""
    before = standin.latency
    standin.latency = seconds
    try:
        yield
    finally:
        standin.latency = before


# -- a third party's provider: the scaffold -------------------------------------------------------

SCAFFOLD_NAME = "acme_sms"
SCAFFOLD_DISPLAY = "Acme SMS"


class ScaffoldApi:
    """The example API the scaffold's provider talks to (``core/src/relaykit/
    scaffold_template``): ``GET /v1/account`` answers the account for a key starting
    ``good_``, 401 with the provider's error body for any other; ``POST /v1/messages``
    takes a message."""

    def __call__(self, request: StandInRequest) -> Any:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not key.startswith("good_"):
            return 401, {"error": "invalid api key"}
        if request.method == "GET" and request.path == "/v1/account":
            return 200, {"id": "acct_1", "name": "stand-in"}
        if request.method == "POST" and request.path == "/v1/messages":
            return 201, {"id": "msg_1", "status": "queued"}
        return 404, {"error": "not found"}


@dataclass
class ScaffoldConsole:
    base_url: str
    token: str
    standin: StandIn
    env: dict[str, str]
    log: Path

    def url(self, path: str = "/console/") -> str:
        return f"{self.base_url}{path}"


def build_scaffold(folder: Path) -> Path:
    """``relaykit new-provider acme_sms`` built and installed into ``folder/site`` (the
    way tests/test_scaffold.py does it): the site folder to put on ``PYTHONPATH``."""
    made = run_cli(
        [
            "new-provider",
            SCAFFOLD_NAME,
            "--display-name",
            SCAFFOLD_DISPLAY,
            "--directory",
            str(folder),
        ],
        cli_env(folder / "scaffold-home"),
    )
    package = Path(made.stdout.strip().splitlines()[-1])
    site = folder / "site"
    pip_install_into(package, site)
    return site


@contextmanager
def scaffold_console(folder: Path) -> Iterator[ScaffoldConsole]:
    """The real server with the scaffold's provider installed beside the built-in ones (its
    site folder on the server's ``PYTHONPATH``; nothing in the console changed), its
    example API answered by :class:`ScaffoldApi`, and tenant ``acme``'s token."""
    site = build_scaffold(folder)
    with stand_in(ScaffoldApi()) as standin:
        env = cli_env(
            folder / "home",
            {
                "PYTHONPATH": str(site),
                f"RELAYKIT_{SCAFFOLD_NAME.upper()}_API_BASE": standin.base_url,
                "RELAYKIT_DATABASE_URL": f"sqlite:///{folder / 'relaykit.sqlite3'}",
            },
        )
        log = folder / "server.log"
        run_cli(["tenants", "create", "acme"], env)
        with ThreadPoolExecutor(2) as pool:
            starting = pool.submit(start_server, env, log)
            token = pool.submit(
                lambda: (
                    run_cli(["tokens", "create", "--tenant", "acme"], env)
                    .stdout.strip()
                    .splitlines()[-1]
                )
            )
            server = starting.result()
        try:
            yield ScaffoldConsole(server.base_url, token.result(), standin, env, log)
        finally:
            stop_server(server)
