"""The ``aws-kms`` key provider: data keys wrapped by AWS KMS ``Encrypt`` and unwrapped by
``Decrypt``, bound to the integration by an encryption context.

relaykit hands the provider the key id to wrap under (the primary key is the database's
record, not this plugin's); ``RELAYKIT_AWS_KMS_KEY_ID`` only names the key a new database
begins with. See the distribution's README for settings, IAM permissions and rotation.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from relaykit.errors import ConfigurationError
from relaykit.sealing import CredentialsUnreadable, KeyUnavailable, SealError
from relaykit_aws_kms.cache import UnwrapCache, cache_key

logger = logging.getLogger("relaykit.keys.aws_kms")

NAME = "aws-kms"

#: The plugin's settings (read from the environment by the plugin itself).
KEY_ID_VARIABLE = "RELAYKIT_AWS_KMS_KEY_ID"
ENDPOINT_URL_VARIABLE = "RELAYKIT_AWS_KMS_ENDPOINT_URL"
REGION_VARIABLE = "RELAYKIT_AWS_REGION"
CACHE_SIZE_VARIABLE = "RELAYKIT_AWS_KMS_CACHE_SIZE"
CACHE_SECONDS_VARIABLE = "RELAYKIT_AWS_KMS_CACHE_SECONDS"

DEFAULT_CACHE_SIZE = 1000
DEFAULT_CACHE_SECONDS = 300.0

#: KMS's bounds on a CiphertextBlob: anything else is not a KMS wrap at all.
_MAX_CIPHERTEXT_BYTES = 6144

#: Decrypt errors that say "this ciphertext does not open under this key and context": the
#: row's fault. Every other error (NotFound, Disabled, KMSInvalidState, AccessDenied,
#: KeyUnavailable, DependencyTimeout, KMSInternal, throttling, a transport failure) says the
#: key cannot be used now: the operator's.
UNREADABLE_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})

_HINTS = {
    "NoRegionError": f" (set {REGION_VARIABLE} or AWS_REGION)",
    "NoCredentialsError": " (boto3's credential chain found no AWS credentials)",
}

_CODE = re.compile(r"[^A-Za-z0-9_.:-]")

_ASSOCIATED_DATA_PREFIX = b"relaykit/credentials/v1"


def encryption_context(associated_data: bytes) -> dict[str, str]:
    """The KMS encryption context for the core's associated data.

    The core's ``relaykit/credentials/v1 NUL tenant NUL integration NUL provider`` becomes
    readable pairs (CloudTrail logs the context of every call); anything else is carried
    whole as base64 under ``relaykit:aad``. The two shapes never share a key, so no two
    associated data map to one context.
    """
    parts = associated_data.split(b"\x00")
    if len(parts) == 4 and parts[0] == _ASSOCIATED_DATA_PREFIX and all(parts[1:]):
        try:
            tenant_id, integration_id, provider = (part.decode() for part in parts[1:])
        except UnicodeDecodeError:
            pass
        else:
            return {
                "relaykit": "credentials/v1",
                "tenant_id": tenant_id,
                "integration_id": integration_id,
                "provider": provider,
            }
    return {"relaykit:aad": base64.b64encode(associated_data).decode()}


class _HideKeyMaterial(logging.Filter):
    """botocore logs each request and response body at DEBUG: for KMS, the data key in
    base64 (``Plaintext``) and its wrap (``CiphertextBlob``). This filter, on the two
    loggers that do (``botocore.endpoint``, ``botocore.parsers``), masks those values in
    every record, whichever service it is about, before any handler sees it."""

    _VALUE = re.compile(r'("(?:Plaintext|CiphertextBlob)"\s*:\s*")[^"]*(")')

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Plaintext" in message or "CiphertextBlob" in message:
            record.msg, record.args = self._VALUE.sub(r"\1[redacted]\2", message), None
        return True


#: The botocore loggers that log request and response bodies.
BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers")


def hide_key_material_in_botocore_logs() -> None:
    """Put :class:`_HideKeyMaterial` on :data:`BODY_LOGGERS` (once; done on import)."""
    for name in BODY_LOGGERS:
        named = logging.getLogger(name)
        if not any(isinstance(f, _HideKeyMaterial) for f in named.filters):
            named.addFilter(_HideKeyMaterial())


hide_key_material_in_botocore_logs()


def is_alias(key_id: str) -> bool:
    """Whether ``key_id`` is an alias name (``alias/…``) or alias ARN (``…:alias/…``)."""
    return key_id.startswith("alias/") or ":alias/" in key_id


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "UnknownError")
        return _CODE.sub("", code)[:64] or "UnknownError"
    return type(exc).__name__


def refusal(exc: BaseException, operation: str, key_id: str) -> SealError:
    """The :class:`SealError` for a failed KMS call: its error code and the key id, nothing
    of the request (no plaintext, no ciphertext, no endpoint)."""
    code = _error_code(exc)
    if code == "IncorrectKeyException" and is_alias(key_id):
        # The blob names an alias, and the alias now points at another key: an operator's
        # change (point it back, or rewrap onto a key ARN), not this row's fault.
        return KeyUnavailable(
            f"AWS KMS {operation} with key {key_id} failed: {code} (the alias now names "
            "another key than the one that wrapped this data key)"
        )
    if operation == "Decrypt" and isinstance(exc, ClientError) and code in UNREADABLE_CODES:
        return CredentialsUnreadable(
            f"AWS KMS could not decrypt the data key with key {key_id}: {code} (it was "
            "wrapped for another integration or key, or altered)"
        )
    return KeyUnavailable(
        f"AWS KMS {operation} with key {key_id} failed: {code}{_HINTS.get(code, '')}"
    )


def _env_number(
    environ: Mapping[str, str], name: str, kind: Callable[[str], Any], default: Any
) -> Any:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(f"{name} must be a number of 0 or more, not {raw!r}")
    return value


class AwsKms:
    """Wraps data keys with AWS KMS keys (any key id, key ARN, alias name or alias ARN).

    One boto3 client per provider, made on first use (boto3 clients are thread-safe; making
    one is not, hence the lock), so an installed but unselected provider costs nothing until
    a blob it wrapped is opened. Unwrapped data keys are cached (:class:`UnwrapCache`).
    """

    name = NAME
    in_process = False  # every wrap and unwrap is a network call

    def __init__(
        self,
        *,
        default_key_id: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        connect_timeout: float = 2,
        read_timeout: float = 5,
        retries: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._default_key_id = default_key_id or None
        self.region = region or None
        self.endpoint_url = endpoint_url or None
        self.config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # botocore's max_attempts counts retries after the first attempt
            retries={"mode": "standard", "max_attempts": retries},
            user_agent_extra="relaykit-aws-kms",
        )
        self.cache = UnwrapCache(cache_size, cache_seconds, clock=clock)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> AwsKms:
        """A provider from the ``RELAYKIT_AWS_*`` variables (``options`` override them)."""
        env = os.environ if environ is None else environ
        settings: dict[str, Any] = {
            "default_key_id": env.get(KEY_ID_VARIABLE, "").strip() or None,
            "endpoint_url": env.get(ENDPOINT_URL_VARIABLE, "").strip() or None,
            "region": env.get(REGION_VARIABLE, "").strip() or None,
            "cache_size": _env_number(env, CACHE_SIZE_VARIABLE, int, DEFAULT_CACHE_SIZE),
            "cache_seconds": _env_number(env, CACHE_SECONDS_VARIABLE, float, DEFAULT_CACHE_SECONDS),
        }
        return cls(**{**settings, **options})

    @property
    def default_key_id(self) -> str:
        if not self._default_key_id:
            raise ConfigurationError(
                f"{KEY_ID_VARIABLE} is not set: name the KMS key relaykit begins with (a key "
                "id, key ARN or alias ARN)"
            )
        return self._default_key_id

    @property
    def client(self) -> Any:
        """The KMS client (botocore), made on first use."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    session = boto3.session.Session(region_name=self.region)
                    self._client = session.client(
                        "kms", endpoint_url=self.endpoint_url, config=self.config
                    )
        return self._client

    def _kms(self, operation: str, key_id: str, **request: Any) -> Any:
        """One KMS call (``Encrypt`` or ``Decrypt``) under ``key_id``, timed in the debug
        log; its failure as the :class:`SealError` :func:`refusal` makes of it."""
        started = time.perf_counter()
        try:  # the client is made here on first use: a missing region is a refusal too
            client = self.client
            call = client.encrypt if operation == "Encrypt" else client.decrypt
            answer = call(KeyId=key_id, **request)
        except (ClientError, BotoCoreError) as exc:
            raise refusal(exc, operation, key_id) from None
        logger.debug(
            "KMS %s with key %s: %.1f ms",
            operation,
            key_id,
            (time.perf_counter() - started) * 1000,
        )
        return answer

    def wrap(self, key_id: str, data_key: bytes, associated_data: bytes) -> bytes:
        """KMS ``Encrypt`` of the data key under ``key_id`` with the encryption context."""
        answer = self._kms(
            "Encrypt",
            key_id,
            Plaintext=data_key,
            EncryptionContext=encryption_context(associated_data),
        )
        return bytes(answer["CiphertextBlob"])

    def unwrap(self, key_id: str, wrapped: bytes, associated_data: bytes) -> bytes:
        """KMS ``Decrypt`` of a wrapped data key, naming ``key_id`` (KMS refuses a ciphertext
        of another key) and the same encryption context; answered from the cache when the
        same wrap was opened within its lifetime."""
        if not 0 < len(wrapped) <= _MAX_CIPHERTEXT_BYTES:
            raise CredentialsUnreadable(
                f"the data key wrapped by AWS KMS key {key_id} is corrupt: it has "
                f"{len(wrapped)} bytes"
            )
        cached_under = cache_key(key_id, wrapped, associated_data)
        cached = self.cache.get(cached_under)
        if cached is not None:
            return cached
        answer = self._kms(
            "Decrypt",
            key_id,
            CiphertextBlob=wrapped,
            EncryptionContext=encryption_context(associated_data),
        )
        data_key = bytes(answer["Plaintext"])
        self.cache.put(cached_under, data_key)
        return data_key
