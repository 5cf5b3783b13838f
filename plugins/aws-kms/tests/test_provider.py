"""The aws-kms key provider against KMS (moto's server over HTTP): how each failure is
classified, the encryption context on the wire, its settings, and secrecy."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from relaykit.errors import ConfigurationError
from relaykit.keys import KeySet
from relaykit.sealing import (
    CredentialsUnreadable,
    KeyUnavailable,
    SealContext,
    open_credentials,
    runs_in_process,
    seal_credentials,
)
from relaykit.testing import closed_port_url, silent_server
from relaykit.testing.key_provider_contract import spellings
from relaykit_aws_kms import AwsKms, encryption_context, refusal

from .kms_stand_in import REGION, Kms

CONTEXT = SealContext("01jtenant00000000000000000", "01jintegration000000000000", "stripe")
OTHER = SealContext("01jtenant00000000000000000", "01jintegration000000000001", "stripe")
AAD = CONTEXT.associated_data()


def data_key() -> bytes:
    return secrets.token_bytes(32)


# -- the encryption context --------------------------------------------------------------------


def test_the_cores_associated_data_becomes_a_readable_context() -> None:
    assert encryption_context(AAD) == {
        "relaykit": "credentials/v1",
        "tenant_id": "01jtenant00000000000000000",
        "integration_id": "01jintegration000000000000",
        "provider": "stripe",
    }


@pytest.mark.parametrize(
    "aad",
    [
        b"relaykit/key-probe/v1",
        b"relaykit/credentials/v1\x00t\x00i",  # three parts
        b"relaykit/credentials/v1\x00t\x00i\x00p\x00extra",
        b"relaykit/credentials/v1\x00t\x00\x00p",  # an empty part
        b"relaykit/credentials/v2\x00t\x00i\x00p",
        b"relaykit/credentials/v1\x00\xff\xfe\x00i\x00p",  # not UTF-8
        b"",
    ],
)
def test_any_other_associated_data_is_carried_whole(aad: bytes) -> None:
    assert encryption_context(aad) == {"relaykit:aad": base64.b64encode(aad).decode()}


def test_the_encryption_context_is_sent_to_kms(kms: Kms) -> None:
    key = kms.new_key()
    secret = data_key()
    wrapped = kms.provider().wrap(key, secret, AAD)
    with pytest.raises(ClientError) as refused:
        kms.admin.decrypt(CiphertextBlob=wrapped, KeyId=key)
    assert refused.value.response["Error"]["Code"] == "InvalidCiphertextException"
    opened = kms.admin.decrypt(
        CiphertextBlob=wrapped,
        KeyId=key,
        EncryptionContext={
            "relaykit": "credentials/v1",
            "tenant_id": CONTEXT.tenant_id,
            "integration_id": CONTEXT.integration_id,
            "provider": CONTEXT.provider,
        },
    )
    assert opened["Plaintext"] == secret


def test_ciphertext_of_another_context_is_unreadable(kms: Kms) -> None:
    key = kms.new_key()
    provider = kms.provider()
    wrapped = provider.wrap(key, data_key(), AAD)
    with pytest.raises(CredentialsUnreadable, match="InvalidCiphertextException"):
        provider.unwrap(key, wrapped, OTHER.associated_data())


# -- failures: the operator's (KeyUnavailable) ---------------------------------------------------


def test_an_unreachable_endpoint_is_unavailable_quickly(kms: Kms) -> None:
    provider = AwsKms(region=REGION, endpoint_url=closed_port_url(), connect_timeout=1, retries=0)
    key = f"arn:aws:kms:{REGION}:123456789012:key/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    started = time.monotonic()
    with pytest.raises(KeyUnavailable, match="EndpointConnectionError") as wrap_failed:
        provider.wrap(key, data_key(), AAD)
    with pytest.raises(KeyUnavailable, match="EndpointConnectionError"):
        provider.unwrap(key, b"x" * 64, AAD)
    assert time.monotonic() - started < 3
    assert key in str(wrap_failed.value) and "127.0.0.1" not in str(wrap_failed.value)


def test_a_server_that_never_answers_is_unavailable(kms: Kms) -> None:
    with silent_server() as url:
        provider = AwsKms(region=REGION, endpoint_url=url, read_timeout=0.3, retries=0)
        started = time.monotonic()
        with pytest.raises(KeyUnavailable, match="ReadTimeoutError"):
            provider.wrap(kms.new_key(), data_key(), AAD)
        assert time.monotonic() - started < 3


def test_a_disabled_key_is_unavailable_and_works_again_once_enabled(kms: Kms) -> None:
    key = kms.new_key()
    provider = kms.provider(cache_size=0)
    secret = data_key()
    wrapped = provider.wrap(key, secret, AAD)
    kms.disable(key)
    with pytest.raises(KeyUnavailable, match="DisabledException"):
        provider.unwrap(key, wrapped, AAD)
    with pytest.raises(KeyUnavailable, match="DisabledException"):
        provider.wrap(key, data_key(), AAD)
    kms.enable(key)
    assert provider.unwrap(key, wrapped, AAD) == secret


def test_a_key_pending_deletion_is_unavailable(kms: Kms) -> None:
    key = kms.new_key()
    provider = kms.provider()
    wrapped = provider.wrap(key, data_key(), AAD)
    kms.schedule_deletion(key)
    with pytest.raises(KeyUnavailable, match="KMSInvalidStateException"):
        provider.unwrap(key, wrapped, AAD)


def test_a_key_that_does_not_exist_is_unavailable(kms: Kms) -> None:
    provider = kms.provider()
    wrapped = provider.wrap(kms.new_key(), data_key(), AAD)
    missing = f"arn:aws:kms:{REGION}:123456789012:key/6f0c6c2e-3f55-4d3b-9a1e-4c1f0e0f0a0b"
    for call in (
        lambda: provider.unwrap(missing, wrapped, AAD),
        lambda: provider.wrap(missing, data_key(), AAD),
        lambda: provider.wrap("alias/relaykit-never-made", data_key(), AAD),
    ):
        with pytest.raises(KeyUnavailable, match="NotFoundException"):
            call()


def test_no_credentials_is_unavailable(kms: Kms, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(KeyUnavailable, match="NoCredentialsError"):
        kms.provider(retries=0).wrap(kms.new_key(), data_key(), AAD)


def test_no_region_is_unavailable_and_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    provider = AwsKms(default_key_id="k")  # constructing needs no region: only a call does
    with pytest.raises(KeyUnavailable, match=r"NoRegionError.*RELAYKIT_AWS_REGION"):
        provider.wrap("k", data_key(), AAD)


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "the service's words"}}, "Decrypt")


@pytest.mark.parametrize(
    ("error", "decrypt_gives"),
    [
        (client_error("InvalidCiphertextException"), CredentialsUnreadable),
        (client_error("IncorrectKeyException"), CredentialsUnreadable),
        (client_error("NotFoundException"), KeyUnavailable),
        (client_error("DisabledException"), KeyUnavailable),
        (client_error("KMSInvalidStateException"), KeyUnavailable),
        (client_error("AccessDeniedException"), KeyUnavailable),
        (client_error("KeyUnavailableException"), KeyUnavailable),
        (client_error("DependencyTimeoutException"), KeyUnavailable),
        (client_error("KMSInternalException"), KeyUnavailable),
        (client_error("ThrottlingException"), KeyUnavailable),
        (client_error("LimitExceededException"), KeyUnavailable),
        (client_error("SomethingNewException"), KeyUnavailable),
        (EndpointConnectionError(endpoint_url="https://kms.example"), KeyUnavailable),
        (ConnectTimeoutError(endpoint_url="https://kms.example"), KeyUnavailable),
        (ReadTimeoutError(endpoint_url="https://kms.example"), KeyUnavailable),
        (NoCredentialsError(), KeyUnavailable),
        (NoRegionError(), KeyUnavailable),
    ],
    ids=lambda value: getattr(value, "__name__", None) or _error_id(value),
)
def test_error_mapping(error: Exception, decrypt_gives: type[Exception]) -> None:
    decrypted = refusal(error, "Decrypt", "key-1")
    assert type(decrypted) is decrypt_gives
    assert type(refusal(error, "Encrypt", "key-1")) is KeyUnavailable  # a wrap: never the row's
    message = str(decrypted)
    assert "key-1" in message
    assert "the service's words" not in message and "kms.example" not in message


@pytest.mark.parametrize(
    "alias", ["alias/relaykit", f"arn:aws:kms:{REGION}:123456789012:alias/relaykit"]
)
def test_an_alias_that_now_names_another_key_is_unavailable_not_unreadable(alias: str) -> None:
    refused = refusal(client_error("IncorrectKeyException"), "Decrypt", alias)
    assert type(refused) is KeyUnavailable and alias in str(refused)
    # an invalid ciphertext stays the row's fault whatever names the key
    assert type(refusal(client_error("InvalidCiphertextException"), "Decrypt", alias)) is (
        CredentialsUnreadable
    )


def _error_id(error: Any) -> str:
    if isinstance(error, ClientError):
        return str(error.response["Error"]["Code"])
    return type(error).__name__


def test_a_wrap_of_no_bytes_is_unreadable_without_a_call(kms: Kms) -> None:
    with pytest.raises(CredentialsUnreadable):
        AwsKms(region=REGION, endpoint_url=closed_port_url()).unwrap("k", b"", AAD)


# -- settings ------------------------------------------------------------------------------------


def test_settings_come_from_the_environment(kms: Kms) -> None:
    provider = AwsKms.from_env(
        {
            "RELAYKIT_AWS_KMS_KEY_ID": "alias/relaykit",
            "RELAYKIT_AWS_KMS_ENDPOINT_URL": kms.endpoint,
            "RELAYKIT_AWS_REGION": "eu-west-3",
            "RELAYKIT_AWS_KMS_CACHE_SIZE": "10",
            "RELAYKIT_AWS_KMS_CACHE_SECONDS": "2.5",
        }
    )
    assert provider.default_key_id == "alias/relaykit"
    assert (provider.cache.size, provider.cache.seconds) == (10, 2.5)
    assert provider.client.meta.region_name == "eu-west-3"
    assert provider.client.meta.endpoint_url == kms.endpoint
    config = provider.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 5)
    # botocore's max_attempts is retries: with the first attempt, four in all
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_defaults() -> None:
    provider = AwsKms.from_env({})
    assert (provider.cache.size, provider.cache.seconds) == (1000, 300.0)
    assert provider.endpoint_url is None and provider.region is None
    assert provider.name == "aws-kms" and provider.in_process is False
    assert not runs_in_process(provider)


def test_the_key_id_is_needed_only_as_the_default() -> None:
    provider = AwsKms.from_env({})  # installed, not selected: constructs fine
    with pytest.raises(ConfigurationError, match="RELAYKIT_AWS_KMS_KEY_ID"):
        _ = provider.default_key_id


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAYKIT_AWS_KMS_CACHE_SIZE", "many"),
        ("RELAYKIT_AWS_KMS_CACHE_SIZE", "-1"),
        ("RELAYKIT_AWS_KMS_CACHE_SIZE", "2.5"),
        ("RELAYKIT_AWS_KMS_CACHE_SECONDS", "soon"),
        ("RELAYKIT_AWS_KMS_CACHE_SECONDS", "-3"),
    ],
)
def test_a_bad_number_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        AwsKms.from_env({name: value})


# -- secrecy -------------------------------------------------------------------------------------


def test_no_data_key_or_secret_reaches_a_log_line_or_a_message(
    kms: Kms, caplog: pytest.LogCaptureFixture
) -> None:
    """botocore logs request and response bodies at DEBUG (the data key, base64, in both):
    the plugin masks them; and no refusal repeats any of it."""
    caplog.set_level(logging.DEBUG)
    key, other_key = kms.new_key(), kms.new_key()
    provider = kms.provider()
    keys = KeySet.single(provider, key)
    secret = "sk_live_canary_" + secrets.token_hex(12)
    sealed = seal_credentials({"secret_key": secret}, CONTEXT, keys)
    assert open_credentials(sealed, CONTEXT, keys) == {"secret_key": secret}
    canary = data_key()
    wrapped = provider.wrap(key, canary, AAD)
    assert provider.unwrap(key, wrapped, AAD) == canary
    messages = []
    for attempt in (
        lambda: provider.unwrap(key, wrapped, OTHER.associated_data()),
        lambda: provider.unwrap(other_key, wrapped, AAD),
        lambda: open_credentials(sealed, OTHER, keys),
    ):
        with pytest.raises((CredentialsUnreadable, KeyUnavailable)) as refused:
            attempt()
        messages.append(str(refused.value))
    kms.disable(key)
    with pytest.raises(KeyUnavailable) as disabled:
        kms.provider().unwrap(key, wrapped, AAD)
    messages.append(str(disabled.value))
    assert any("Plaintext" in record.getMessage() for record in caplog.records), (
        "botocore logged no bodies: the test sees nothing"
    )
    texts = [caplog.text, *messages]
    for form in [secret, *spellings(canary), *spellings(wrapped)]:
        for text in texts:
            assert form not in text
