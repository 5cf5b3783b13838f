"""A local AWS KMS for the tests: moto's server, over real HTTP (conftest.py starts one per
test session).

moto (5.x) keeps a key's state (``DisableKey``, ``ScheduleKeyDeletion``) but still encrypts
and decrypts with a disabled or pending-deletion key, where KMS answers
``DisabledException`` / ``KMSInvalidStateException``. :class:`KeyStateEnforced` adds those
answers in front of moto's app, in KMS's own JSON error shape, so the plugin's error mapping
is tested on what KMS sends.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.kms.models import kms_backends
from moto.server import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    ThreadedMotoServer,
    create_backend_app,
)
from werkzeug.serving import make_server

from relaykit_aws_kms import AwsKms

REGION = "us-east-1"

#: KMS's answer to Encrypt or Decrypt with a key in each state (other states: moto's own).
STATE_ERRORS = {
    "Disabled": ("DisabledException", "{arn} is disabled."),
    "PendingDeletion": ("KMSInvalidStateException", "{arn} is pending deletion."),
}


class KeyStateEnforced:
    """WSGI middleware: Encrypt/Decrypt naming a disabled or pending-deletion key get KMS's
    error, as KMS answers them; everything else goes to moto."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target in ("TrentService.Encrypt", "TrentService.Decrypt"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = _Body(body)
            refusal = self._refusal(json.loads(body or b"{}").get("KeyId"))
            if refusal is not None:
                payload = json.dumps({"__type": refusal[0], "message": refusal[1]}).encode()
                start_response(
                    "400 Bad Request",
                    [
                        ("Content-Type", "application/x-amz-json-1.1"),
                        ("Content-Length", str(len(payload))),
                    ],
                )
                return [payload]
        return self.app(environ, start_response)

    @staticmethod
    def _refusal(key_id: str | None) -> tuple[str, str] | None:
        if not key_id:
            return None
        backend = kms_backends[DEFAULT_ACCOUNT_ID][REGION]
        try:
            key = backend.keys.get(backend.any_id_to_key_id(key_id))
        except Exception:
            return None  # an unknown alias: moto answers it
        if key is None or key.key_state not in STATE_ERRORS:
            return None
        code, message = STATE_ERRORS[key.key_state]
        return code, message.format(arn=key.arn)


class _Body:
    """A re-readable request body for the wrapped app."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._at + size
        chunk, self._at = self._data[self._at : end], min(end, len(self._data))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


class KmsStandIn(ThreadedMotoServer):
    """moto's threaded server on a free port, with :class:`KeyStateEnforced` in front."""

    def _server_entry(self) -> None:
        app = KeyStateEnforced(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class Kms:
    """The running stand-in: its endpoint, an admin client, and key-making helpers."""

    def __init__(self, endpoint: str, started_in: float) -> None:
        self.endpoint = endpoint
        self.started_in = started_in
        self.admin = boto3.client("kms", endpoint_url=endpoint, region_name=REGION)

    def new_key(self, alias: bool = False) -> str:
        """A new symmetric key's ARN (or an alias ARN pointing at it)."""
        arn: str = self.admin.create_key(Description="relaykit test")["KeyMetadata"]["Arn"]
        if not alias:
            return arn
        name = f"alias/relaykit-{uuid.uuid4().hex[:12]}"
        self.admin.create_alias(AliasName=name, TargetKeyId=arn)
        return arn.split(":key/")[0] + ":" + name

    # moto's DisableKey, EnableKey and ScheduleKeyDeletion take the bare key id, not an ARN

    def disable(self, arn: str) -> None:
        self.admin.disable_key(KeyId=arn.rsplit("/", 1)[-1])

    def enable(self, arn: str) -> None:
        self.admin.enable_key(KeyId=arn.rsplit("/", 1)[-1])

    def schedule_deletion(self, arn: str) -> None:
        self.admin.schedule_key_deletion(KeyId=arn.rsplit("/", 1)[-1], PendingWindowInDays=7)

    def provider(self, **options: Any) -> AwsKms:
        settings: dict[str, Any] = {"region": REGION, "endpoint_url": self.endpoint}
        return AwsKms(**{**settings, **options})
