"""``KeyProviderContractTests``: what relaykit requires of a key provider, as tests.

A key provider (the local keyring, a KMS plugin) wraps and unwraps data keys under the
key-encryption keys it holds (:class:`relaykit.sealing.KeyProvider`). Subclass this class in
the provider's own tests and override the ``key_provider`` fixture: it returns (or yields,
to clean up after the test) ``(provider, key_id, other_key_id)``, the provider and two keys
it holds. Every check below then runs against it:

* a wrap unwraps back to the data key under the same associated data, and the wrapped bytes
  neither equal nor contain the data key; two wraps of one data key differ;
* other associated data, a flipped last byte, or a truncated wrap raise
  :class:`~relaykit.sealing.CredentialsUnreadable` (that row's fault); a flipped first byte
  may also raise :class:`~relaykit.sealing.KeyUnavailable` (a KMS's ciphertext can begin with
  a reference to its key, and an altered one names a key it cannot use);
* a wrap made under one key presented as the other key's raises a
  :class:`~relaykit.sealing.SealError`: :class:`~relaykit.sealing.CredentialsUnreadable` or
  :class:`~relaykit.sealing.KeyUnavailable`, as the provider can tell (a KMS may answer
  "incorrect key" or "access denied"), never another exception and never the data key;
* a key the provider does not hold (the ``unknown_key_id`` fixture; override it when the
  provider's ids have a shape the default does not) raises
  :class:`~relaykit.sealing.KeyUnavailable`, for wrap and unwrap (the operator's fault);
* rotation: what was wrapped under one key still unwraps after wrapping under the other;
* thread safety: :attr:`threads` threads of :attr:`round_trips` round trips each, all right;
* no error message, chained exception or log line holds the data key (raw, hex or base64)
  or the wrapped bytes;
* ``name`` and ``default_key_id`` are non-empty strings;
* end to end through the core: credentials sealed by
  :func:`~relaykit.sealing.seal_credentials` through ``KeySet.single(provider, key_id)``
  open with :func:`~relaykit.sealing.open_credentials`, also once the other key is primary,
  and not for another row; the secret reaches no log line.

Example:
    .. code-block:: python

        from relaykit.testing import KeyProviderContractTests

        class TestVaultTransit(KeyProviderContractTests):
            @pytest.fixture
            def key_provider(self, vault_server):
                provider = VaultTransit(url=vault_server.url)
                first, second = vault_server.new_key(), vault_server.new_key()
                yield provider, first, second
                vault_server.delete_keys(first, second)

"""

from __future__ import annotations

import base64
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from relaykit.sealing import (
    CredentialsUnreadable,
    KeyProvider,
    KeyUnavailable,
    SealContext,
    SealError,
    open_credentials,
    read_blob,
    seal_credentials,
)

#: The associated data of a row, as the core makes it; :data:`OTHER_CONTEXT` is another row's.
CONTEXT = SealContext("01jcontracttenant000000000", "01jcontractintegration0000", "acme")
OTHER_CONTEXT = SealContext("01jcontracttenant000000000", "01jcontractintegration0001", "acme")

KeyProviderFixture = tuple[KeyProvider, str, str]


def new_data_key() -> bytes:
    """A data key like the ones the core wraps (256 random bits)."""
    return secrets.token_bytes(32)


def spellings(value: bytes) -> list[str]:
    """The ways ``value`` may show up in a text: hex, base64 (both alphabets), ``repr``."""
    forms = [
        value.hex(),
        value.hex().upper(),
        base64.b64encode(value).decode(),
        base64.urlsafe_b64encode(value).decode(),
        base64.b64encode(value).decode().rstrip("="),
        repr(value)[2:-1],
    ]
    # Base64 of the same bytes at another offset inside a longer text differs: look for the
    # middle of the value's own base64 too (any 24 characters of it are telling).
    encoded = base64.b64encode(value).decode()
    if len(encoded) > 32:
        forms.append(encoded[4:28])
    return [form for form in forms if len(form) >= 8]


def exception_texts(exc: BaseException) -> list[str]:
    """``str`` and ``repr`` of ``exc`` and of every exception chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        texts += [str(arg) for arg in current.args]
        current = current.__cause__ or current.__context__
    return texts


class KeyProviderContractTests:
    """The key-provider contract; see the module for what the subclass gives."""

    #: threads in :meth:`test_concurrent_round_trips`, and round trips in each
    threads: ClassVar[int] = 8
    round_trips: ClassVar[int] = 50

    # -- what the subclass gives ---------------------------------------------------------------

    @pytest.fixture
    def key_provider(self) -> KeyProviderFixture:
        """``(provider, key_id, other_key_id)``: return it, or yield it to clean up after."""
        pytest.fail(
            f"{type(self).__name__} must override the `key_provider` fixture: return (or "
            "yield) (provider, key_id, other_key_id), the provider and two keys it holds.",
            pytrace=False,
        )

    @pytest.fixture
    def unknown_key_id(self) -> str:
        """A key id the provider does not hold (override if ids have a required shape)."""
        return "relaykit-contract-no-such-key-" + secrets.token_hex(4)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _refusal(
        call: Any, *args: Any, expected: tuple[type[SealError], ...], what: str
    ) -> SealError:
        """The exception ``call(*args)`` raises, checked to be one of ``expected``."""
        names = " or ".join(kind.__name__ for kind in expected)
        try:
            call(*args)
        except expected as exc:
            return exc
        except Exception as exc:
            pytest.fail(
                f"{what}: the provider raised {type(exc).__name__}, not {names}. Map the "
                "failure to relaykit.sealing.CredentialsUnreadable (this wrapped key is bad) "
                "or KeyUnavailable (the key cannot be used now).",
                pytrace=False,
            )
        pytest.fail(f"{what}: the provider returned instead of raising {names}.", pytrace=False)

    # -- identity --------------------------------------------------------------------------------

    def test_name_and_default_key_id_are_non_empty_strings(
        self, key_provider: KeyProviderFixture
    ) -> None:
        provider, _, _ = key_provider
        assert isinstance(provider.name, str) and provider.name, (
            "`name` must be a non-empty str: it is recorded in every blob the provider wraps"
        )
        default = provider.default_key_id
        assert isinstance(default, str) and default, (
            "`default_key_id` must be a non-empty str: the key a new database begins with"
        )

    # -- round trips -----------------------------------------------------------------------------

    def test_wrap_then_unwrap_returns_the_data_key(self, key_provider: KeyProviderFixture) -> None:
        provider, key_id, other_key_id = key_provider
        aad = CONTEXT.associated_data()
        for key in (key_id, other_key_id):
            data_key = new_data_key()
            wrapped = provider.wrap(key, data_key, aad)
            assert isinstance(wrapped, bytes), "wrap must return bytes"
            assert wrapped != data_key and data_key not in wrapped, (
                "the wrapped bytes hold the data key as it is"
            )
            assert provider.unwrap(key, wrapped, aad) == data_key

    def test_two_wraps_of_one_data_key_differ(self, key_provider: KeyProviderFixture) -> None:
        provider, key_id, _ = key_provider
        data_key, aad = new_data_key(), CONTEXT.associated_data()
        first = provider.wrap(key_id, data_key, aad)
        second = provider.wrap(key_id, data_key, aad)
        assert first != second, "wrapping must be randomised (a fresh nonce or IV each time)"
        assert provider.unwrap(key_id, first, aad) == provider.unwrap(key_id, second, aad)

    def test_wraps_under_one_key_still_unwrap_after_wrapping_under_another(
        self, key_provider: KeyProviderFixture
    ) -> None:
        provider, old_key, new_key = key_provider
        aad = CONTEXT.associated_data()
        old_data_key, new_data_key_ = new_data_key(), new_data_key()
        old_wrap = provider.wrap(old_key, old_data_key, aad)
        new_wrap = provider.wrap(new_key, new_data_key_, aad)
        assert provider.unwrap(old_key, old_wrap, aad) == old_data_key
        assert provider.unwrap(new_key, new_wrap, aad) == new_data_key_
        # a rewrap: the old key's data key, unwrapped and wrapped under the new key
        rewrapped = provider.wrap(new_key, provider.unwrap(old_key, old_wrap, aad), aad)
        assert provider.unwrap(new_key, rewrapped, aad) == old_data_key

    # -- refusals --------------------------------------------------------------------------------

    def test_other_associated_data_is_unreadable(self, key_provider: KeyProviderFixture) -> None:
        provider, key_id, _ = key_provider
        wrapped = provider.wrap(key_id, new_data_key(), CONTEXT.associated_data())
        self._refusal(
            provider.unwrap,
            key_id,
            wrapped,
            OTHER_CONTEXT.associated_data(),
            expected=(CredentialsUnreadable,),
            what="unwrapping with another row's associated data",
        )

    @pytest.mark.parametrize("change", ["flip the last byte", "flip the first byte", "truncate"])
    def test_an_altered_wrap_is_unreadable(
        self, key_provider: KeyProviderFixture, change: str
    ) -> None:
        provider, key_id, _ = key_provider
        aad = CONTEXT.associated_data()
        wrapped = bytearray(provider.wrap(key_id, new_data_key(), aad))
        if change == "truncate":
            del wrapped[-1]
        else:
            wrapped[-1 if "last" in change else 0] ^= 0x01
        expected: tuple[type[SealError], ...] = (CredentialsUnreadable,)
        if change == "flip the first byte":
            # A KMS's ciphertext may begin with a reference to the key: an altered reference
            # names a key that does not exist or is not this one, which it may answer as
            # "cannot use that key".
            expected = (CredentialsUnreadable, KeyUnavailable)
        self._refusal(
            provider.unwrap,
            key_id,
            bytes(wrapped),
            aad,
            expected=expected,
            what=f"unwrapping a wrap altered ({change})",
        )

    def test_a_wrap_presented_under_the_other_key_is_refused(
        self, key_provider: KeyProviderFixture
    ) -> None:
        provider, key_id, other_key_id = key_provider
        aad = CONTEXT.associated_data()
        wrapped = provider.wrap(key_id, new_data_key(), aad)
        # Either is right: CredentialsUnreadable when the provider can tell that the wrap is
        # not this key's; KeyUnavailable when it cannot tell that from "no access".
        self._refusal(
            provider.unwrap,
            other_key_id,
            wrapped,
            aad,
            expected=(CredentialsUnreadable, KeyUnavailable),
            what="unwrapping key A's wrap as key B's",
        )

    def test_a_key_it_does_not_hold_is_unavailable(
        self, key_provider: KeyProviderFixture, unknown_key_id: str
    ) -> None:
        provider, key_id, _ = key_provider
        aad = CONTEXT.associated_data()
        wrapped = provider.wrap(key_id, new_data_key(), aad)
        self._refusal(
            provider.unwrap,
            unknown_key_id,
            wrapped,
            aad,
            expected=(KeyUnavailable,),
            what="unwrapping under a key the provider does not hold",
        )
        self._refusal(
            provider.wrap,
            unknown_key_id,
            new_data_key(),
            aad,
            expected=(KeyUnavailable,),
            what="wrapping under a key the provider does not hold",
        )

    # -- concurrency -----------------------------------------------------------------------------

    def test_concurrent_round_trips(self, key_provider: KeyProviderFixture) -> None:
        provider, key_id, other_key_id = key_provider

        def worker(number: int) -> list[str]:
            problems = []
            for turn in range(self.round_trips):
                key = key_id if (number + turn) % 2 == 0 else other_key_id
                context = SealContext("t", f"i-{number}-{turn}", "acme")
                aad, data_key = context.associated_data(), new_data_key()
                try:
                    wrapped = provider.wrap(key, data_key, aad)
                    if provider.unwrap(key, wrapped, aad) != data_key:
                        problems.append(f"thread {number}, turn {turn}: another data key")
                except Exception as exc:
                    problems.append(f"thread {number}, turn {turn}: {type(exc).__name__}")
            return problems

        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            found = [p for ps in pool.map(worker, range(self.threads)) for p in ps]
        assert found == [], f"{len(found)} round trips failed, e.g. {found[:5]}"

    # -- through the core ------------------------------------------------------------------------

    def test_credentials_seal_and_open_through_the_core(
        self, key_provider: KeyProviderFixture, caplog: pytest.LogCaptureFixture
    ) -> None:
        from relaykit.keys import KeySet

        caplog.set_level(logging.DEBUG)
        provider, key_id, other_key_id = key_provider
        secret = "sk_contract_canary_" + secrets.token_hex(8)
        sealed = seal_credentials({"secret_key": secret}, CONTEXT, KeySet.single(provider, key_id))
        blob = read_blob(sealed)
        assert (blob.key_provider, blob.key_id) == (provider.name, key_id)
        assert secret.encode() not in sealed
        assert open_credentials(sealed, CONTEXT, KeySet.single(provider, key_id)) == {
            "secret_key": secret
        }
        # after a rotation the blob names its own key, and still opens
        rotated = KeySet.single(provider, other_key_id)
        assert open_credentials(sealed, CONTEXT, rotated) == {"secret_key": secret}
        with pytest.raises(CredentialsUnreadable):
            open_credentials(sealed, OTHER_CONTEXT, rotated)
        assert secret not in caplog.text, "a sealed secret reached a log line"

    # -- secrecy ---------------------------------------------------------------------------------

    def test_no_error_message_or_log_line_holds_key_material(
        self,
        key_provider: KeyProviderFixture,
        unknown_key_id: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        provider, key_id, other_key_id = key_provider
        aad, data_key = CONTEXT.associated_data(), new_data_key()
        wrapped = provider.wrap(key_id, data_key, aad)
        flipped = bytearray(wrapped)
        flipped[-1] ^= 0x01
        attempts = [
            (key_id, wrapped, OTHER_CONTEXT.associated_data()),
            (key_id, bytes(flipped), aad),
            (other_key_id, wrapped, aad),
            (unknown_key_id, wrapped, aad),
        ]
        errors: list[BaseException] = []
        for attempt_key, attempt_wrap, attempt_aad in attempts:
            try:
                provider.unwrap(attempt_key, attempt_wrap, attempt_aad)
            except Exception as exc:
                errors.append(exc)
        try:
            provider.wrap(unknown_key_id, data_key, aad)
        except Exception as exc:
            errors.append(exc)
        assert errors, "none of the refusals raised"
        texts = [text for exc in errors for text in exception_texts(exc)]
        texts += [record.getMessage() for record in caplog.records]
        texts += [record.exc_text or "" for record in caplog.records]
        for what, value in (("the data key", data_key), ("the wrapped key", wrapped)):
            for form in spellings(value):
                for text in texts:
                    if form in text:
                        pytest.fail(
                            f"{what} appears in an error message or log line: "
                            f"{text.replace(form, '<' + what + '>')[:300]!r}",
                            pytrace=False,
                        )
