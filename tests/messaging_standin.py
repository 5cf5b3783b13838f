"""One local stand-in serving both Twilio's and Plivo's APIs (their paths do not overlap).

Bodies follow the providers' documents: Twilio's account and message resources and error
object (shared/provider-specs/twilio_api_v2010.json), Plivo's account, message-queued and
error bodies. Each integration's behaviour is chosen by its auth token, through ``mode``:

* ``ok`` (default): answers as the provider does;
* ``down``: 503 on sends;
* ``revoked``: 401 on sends (verification still passes, as for a key revoked later);
* ``slow``: sends answer after ``slow_seconds``;
* ``hold``: a send is counted, ``accepted`` is set, and the answer waits for ``release``
  (to stop relaykit between the provider's acceptance and its own answer).

**Status callbacks.** A send that names a status callback (Twilio's ``StatusCallback`` form
field; Plivo's ``url``, with ``method`` POST or absent) is followed by the callbacks the
provider documents, POSTed to that URL ``callback_delay`` seconds after the send arrived
(whether or not its answer is held back by ``slow`` or ``hold``) and signed as the provider
signs them with the integration's auth token. The signing here is written from the providers' own
documents and SDKs, not from relaykit's plugins, so an end-to-end test checks one against
the other:

* Twilio (twilio.com/docs/usage/security, twilio-python ``RequestValidator``):
  ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth_token, URL + each form parameter's name
  and value, sorted by name)).
* Plivo V2 (docs.plivo.com/docs/messaging/concepts/signature-validation, plivo-python
  ``validate_signature``): ``X-Plivo-Signature-V2`` = base64(HMAC-SHA256(auth_token, the URL
  without its query + ``X-Plivo-Signature-V2-Nonce``)); ``X-Plivo-Signature-Ma-V2`` is the
  same with the main account's token (here the same token).
* Plivo V3 (docs.plivo.com/docs/voice/xml/request/validation, plivo-python
  ``signature_v3.py``): ``X-Plivo-Signature-V3`` = base64(HMAC-SHA256(auth_token, the URL
  without its query + ``?`` + [its query sorted, ``k=v`` joined by ``&``, then ``.``] + each
  POST parameter's name and value sorted by name + ``.`` + ``X-Plivo-Signature-V3-Nonce``)).

Each message's callbacks carry ``callback_statuses`` in order (``sent`` then ``delivered``
by default; per auth token ``statuses``, e.g. ``("delivered", "sent")`` for a late ``sent``
or ``("delivered", "delivered")`` for a repeat). ``hold_callbacks`` keeps them in ``held``
until ``flush_callbacks``; ``proxy_to`` posts them to another origin than the URL's own
(what a reverse proxy in front of relaykit does: the signature stays over the public URL).
Every callback's answer is kept in ``posted``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from relaykit.testing.standin import Answer, StandInRequest

TWILIO_ACCOUNT = re.compile(r"^/2010-04-01/Accounts/([^/]+)\.json$")
TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
PLIVO_ACCOUNT = re.compile(r"^/v1/Account/([^/]+)/$")
PLIVO_MESSAGES = re.compile(r"^/v1/Account/([^/]+)/Message/$")

DEFAULT_STATUSES = ("sent", "delivered")
# The error code a failed or undelivered message's callback carries: Twilio 30003
# "Unreachable destination handset", Plivo 80 "Destination temporarily unavailable".
TWILIO_FAILURE_CODE = "30003"
PLIVO_FAILURE_CODE = "80"
FAILURES = ("failed", "undelivered")


# -- the providers' signatures, from their documents --------------------------------------


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` for a form POST to ``url``."""
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _without_query(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), parts.query


def plivo_v2_signature(auth_token: str, url: str, nonce: str) -> str:
    """``X-Plivo-Signature-V2``: the URL without its query, then the nonce (no body)."""
    base, _ = _without_query(url)
    digest = hmac.new(auth_token.encode(), (base + nonce).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def plivo_v3_signature(
    auth_token: str, url: str, params: Mapping[str, str], nonce: str, *, method: str = "POST"
) -> str:
    """``X-Plivo-Signature-V3`` for a POST of ``params`` (form) to ``url``."""
    assert method == "POST", "only POST callbacks are played here"
    base, query = _without_query(url)
    query_string = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(query, keep_blank_values=True)))
    body_string = "".join(f"{k}{v}" for k, v in sorted(params.items()))
    if query_string and params:
        signed = f"{base}?{query_string}.{body_string}"
    elif query_string:
        signed = f"{base}?{query_string}"
    elif params:
        signed = f"{base}?{body_string}"
    else:
        signed = base
    message = f"{signed}.{nonce}".encode()
    digest = hmac.new(auth_token.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def twilio_callback(
    url: str, auth_token: str, fields: Mapping[str, str]
) -> tuple[dict[str, str], bytes]:
    """The headers and body of a Twilio status callback POSTed to ``url``."""
    body = urlencode(list(fields.items())).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "TwilioProxy/1.1",
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        "X-Twilio-Signature": twilio_signature(auth_token, url, fields.items()),
    }
    return headers, body


def plivo_callback(
    url: str,
    auth_token: str,
    fields: Mapping[str, str],
    *,
    schemes: Sequence[str] = ("v2", "v3"),
    nonce: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """The headers and body of a Plivo message status callback POSTed to ``url``, carrying
    the signature headers of ``schemes`` (each with a nonce of its own unless given)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "PlivoHTTP"}
    if "v2" in schemes:
        v2_nonce = nonce or _plivo_nonce()
        headers["X-Plivo-Signature-V2-Nonce"] = v2_nonce
        headers["X-Plivo-Signature-V2"] = plivo_v2_signature(auth_token, url, v2_nonce)
        headers["X-Plivo-Signature-Ma-V2"] = headers["X-Plivo-Signature-V2"]
    if "v3" in schemes:
        v3_nonce = nonce or _plivo_nonce()
        headers["X-Plivo-Signature-V3-Nonce"] = v3_nonce
        headers["X-Plivo-Signature-V3"] = plivo_v3_signature(auth_token, url, fields, v3_nonce)
        headers["X-Plivo-Signature-Ma-V3"] = headers["X-Plivo-Signature-V3"]
    return headers, urlencode(list(fields.items())).encode()


def _plivo_nonce() -> str:
    # "Random numeric digits" (Plivo's docs), e.g. 05429567804466091622.
    return "".join(secrets.choice("0123456789") for _ in range(20))


def twilio_status_fields(
    account_sid: str, message_sid: str, status: str, *, to: str, from_: str
) -> dict[str, str]:
    """A Twilio message status callback's parameters (twilio.com/docs/messaging/guides/
    track-outbound-message-status): ``ErrorCode`` only for a failed or undelivered one."""
    fields = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "From": from_,
        "MessageSid": message_sid,
        "MessageStatus": status,
        "SmsSid": message_sid,
        "SmsStatus": status,
        "To": to,
    }
    if status in FAILURES:
        fields["ErrorCode"] = TWILIO_FAILURE_CODE
    return fields


def plivo_status_fields(
    message_uuid: str, status: str, *, to: str, from_: str, sequence: int = 1
) -> dict[str, str]:
    """A Plivo message status callback's parameters (docs.plivo.com/docs/messaging/api/
    message/message-status-callbacks): ``ErrorCode`` only for a failed or undelivered one."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    fields = {
        "From": from_,
        "MCC": "310",
        "MNC": "410",
        "MessageTime": now,
        "MessageUUID": message_uuid,
        "ParentMessageUUID": message_uuid,
        "PartInfo": "1 of 1",
        "Sequence": str(sequence),
        "Status": status,
        "To": to,
        "TotalAmount": "0.00500",
        "TotalRate": "0.00500",
        "Type": "sms",
        "Units": "1",
    }
    if status in FAILURES:
        fields["ErrorCode"] = PLIVO_FAILURE_CODE
    return fields


# -- the stand-in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    """One status callback, signed, ready to POST to ``url``."""

    provider: str
    message_id: str
    status: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Posted:
    """A callback as it was POSTed, and relaykit's answer."""

    callback: Callback
    status_code: int
    answer: dict[str, object] = field(default_factory=dict)


class Messaging:
    def __init__(self) -> None:
        self.mode: dict[str, str] = {}
        self.sends: Counter[str] = Counter()
        self.slow_seconds = 1.5
        self.accepted = threading.Event()
        self.release = threading.Event()
        # status callbacks
        self.statuses: dict[str, tuple[str, ...]] = {}
        self.plivo_schemes: tuple[str, ...] = ("v2", "v3")
        self.callback_delay = 0.2
        self.hold_callbacks = False
        self.held: list[Callback] = []
        self.proxy_to: str | None = None
        self.posted: list[Posted] = []
        self._lock = threading.Lock()

    def token_of(self, request: StandInRequest) -> str:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return ""
        return base64.b64decode(encoded).decode().partition(":")[2]

    def __call__(self, request: StandInRequest) -> Answer:
        token = self.token_of(request)
        mode = self.mode.get(token, "ok")
        path = request.path
        if request.method == "GET" and (match := TWILIO_ACCOUNT.match(path)):
            return 200, {
                "sid": match.group(1),
                "status": "active",
                "type": "Full",
                "friendly_name": "stand-in",
                "owner_account_sid": match.group(1),
            }
        if request.method == "GET" and (match := PLIVO_ACCOUNT.match(path)):
            return 200, {
                "account_type": "standard",
                "api_id": "a1",
                "auth_id": match.group(1),
                "cash_credits": "10.00000",
                "resource_uri": path,
            }
        twilio = TWILIO_MESSAGES.match(path)
        plivo = PLIVO_MESSAGES.match(path)
        if request.method != "POST" or not (twilio or plivo):
            return 404, {"message": "not found"}
        with self._lock:
            self.sends[token] += 1
            count = self.sends[token]
        if mode == "down":
            if twilio:
                return 503, {"code": 20500, "message": "Service Unavailable", "status": 503}
            return 503, {"api_id": "a1", "error": "service unavailable"}
        if mode == "revoked":
            if twilio:
                return 401, {"code": 20003, "message": "Authenticate", "status": 401}
            return 401, {"api_id": "a1", "error": "authentication failed"}
        # The provider has taken the message: its status callbacks are on their way, even
        # while its answer to the send is slow or held.
        if twilio:
            fields = {k: v[0] for k, v in _form(request.body).items()}
            message_id = f"SM{count:032d}"
            if fields.get("StatusCallback"):
                self._schedule(
                    [
                        self._twilio_callback(twilio.group(1), token, message_id, status, fields)
                        for status in self.statuses.get(token, DEFAULT_STATUSES)
                    ]
                )
        else:
            message_id = f"00000000-0000-0000-0000-{count:012d}"
            sent = _json(request.body)
            if sent.get("url") and str(sent.get("method") or "POST").upper() == "POST":
                self._schedule(
                    [
                        self._plivo_callback(token, message_id, status, sequence, sent)
                        for sequence, status in enumerate(
                            self.statuses.get(token, DEFAULT_STATUSES), start=1
                        )
                    ]
                )
        if mode == "slow":
            time.sleep(self.slow_seconds)
        if mode == "hold":
            self.accepted.set()
            self.release.wait(timeout=60)
        if twilio:
            return 201, {
                "sid": message_id,
                "status": "queued",
                "to": fields.get("To"),
                "from": fields.get("From"),
                "body": fields.get("Body"),
            }
        return 202, {
            "api_id": "a1",
            "message": "message(s) queued",
            "message_uuid": [message_id],
        }

    def _twilio_callback(
        self, account_sid: str, token: str, sid: str, status: str, sent: Mapping[str, str]
    ) -> Callback:
        url = sent["StatusCallback"]
        fields = twilio_status_fields(
            account_sid, sid, status, to=sent.get("To", ""), from_=sent.get("From", "")
        )
        headers, body = twilio_callback(url, token, fields)
        return Callback("twilio", sid, status, url, headers, body)

    def _plivo_callback(
        self, token: str, uuid: str, status: str, sequence: int, sent: Mapping[str, object]
    ) -> Callback:
        url = str(sent["url"])
        fields = plivo_status_fields(
            uuid,
            status,
            to=str(sent.get("dst", "")),
            from_=str(sent.get("src", "")),
            sequence=sequence,
        )
        headers, body = plivo_callback(url, token, fields, schemes=self.plivo_schemes)
        return Callback("plivo", uuid, status, url, headers, body)

    # -- delivering callbacks ----------------------------------------------------------------

    def _schedule(self, callbacks: list[Callback]) -> None:
        """Post one message's callbacks in order, after the send's answer has gone out (a
        thread of their own), or keep them for ``flush_callbacks``."""
        if self.hold_callbacks:
            with self._lock:
                self.held.extend(callbacks)
            return

        def deliver() -> None:
            time.sleep(self.callback_delay)
            for callback in callbacks:
                self.post(callback)

        threading.Thread(target=deliver, daemon=True).start()

    def flush_callbacks(self) -> list[Posted]:
        """Post every held callback, in the order they were made; their answers."""
        with self._lock:
            held, self.held = self.held, []
        return [self.post(callback) for callback in held]

    def post(self, callback: Callback) -> Posted:
        """POST one callback (to ``proxy_to`` instead of its URL's origin when set)."""
        target = callback.url
        if self.proxy_to is not None:
            parts = urlsplit(callback.url)
            origin = urlsplit(self.proxy_to)
            target = urlunsplit((origin.scheme, origin.netloc, parts.path, parts.query, ""))
        try:
            response = httpx.post(
                target, content=callback.body, headers=callback.headers, timeout=10
            )
            status_code = response.status_code
            try:
                answer = response.json()
            except ValueError:
                answer = {}
        except httpx.HTTPError as error:
            status_code, answer = 0, {"transport_error": type(error).__name__}
        posted = Posted(callback, status_code, answer if isinstance(answer, dict) else {})
        with self._lock:
            self.posted.append(posted)
        return posted

    def wait_posted(self, count: int, timeout: float = 15.0) -> list[Posted]:
        """The first ``count`` callbacks posted, once they have been (raises if not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.posted) >= count:
                    return list(self.posted[:count])
            time.sleep(0.02)
        raise AssertionError(f"{len(self.posted)} of {count} callbacks posted after {timeout}s")


def _form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(body.decode())


def _json(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
