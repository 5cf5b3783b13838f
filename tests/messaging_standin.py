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
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter

from relaykit.testing.standin import Answer, StandInRequest

TWILIO_ACCOUNT = re.compile(r"^/2010-04-01/Accounts/([^/]+)\.json$")
TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
PLIVO_ACCOUNT = re.compile(r"^/v1/Account/([^/]+)/$")
PLIVO_MESSAGES = re.compile(r"^/v1/Account/([^/]+)/Message/$")


class Messaging:
    def __init__(self) -> None:
        self.mode: dict[str, str] = {}
        self.sends: Counter[str] = Counter()
        self.slow_seconds = 1.5
        self.accepted = threading.Event()
        self.release = threading.Event()
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
        if mode == "slow":
            time.sleep(self.slow_seconds)
        if mode == "hold":
            self.accepted.set()
            self.release.wait(timeout=60)
        if twilio:
            fields = {k: v[0] for k, v in _form(request.body).items()}
            return 201, {
                "sid": f"SM{count:032d}",
                "status": "queued",
                "to": fields.get("To"),
                "from": fields.get("From"),
                "body": fields.get("Body"),
            }
        return 202, {
            "api_id": "a1",
            "message": "message(s) queued",
            "message_uuid": [f"00000000-0000-0000-0000-{count:012d}"],
        }


def _form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(body.decode())
