"""The cache of unwrapped data keys: KMS Decrypt calls counted at botocore
(``before-call.kms.Decrypt``), time moved by an injected clock."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest

from relaykit.sealing import CredentialsUnreadable, KeyUnavailable, SealContext
from relaykit_aws_kms import AwsKms, UnwrapCache

from .kms_stand_in import Kms

AAD = SealContext("t", "i", "stripe").associated_data()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A provider and the number of Decrypt calls it has sent to KMS."""

    def __init__(self, provider: AwsKms) -> None:
        self.provider = provider
        self.decrypts = 0
        provider.client.meta.events.register("before-call.kms.Decrypt", self._count)

    def _count(self, **_: Any) -> None:
        self.decrypts += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


def wraps(provider: AwsKms, key: str, count: int) -> list[tuple[bytes, bytes]]:
    made = []
    for _ in range(count):
        data_key = secrets.token_bytes(32)
        made.append((data_key, provider.wrap(key, data_key, AAD)))
    return made


def test_a_second_unwrap_within_the_lifetime_calls_kms_once(kms: Kms, clock: Clock) -> None:
    key = kms.new_key()
    counted = Counted(kms.provider(cache_seconds=60, clock=clock))
    [(data_key, wrapped)] = wraps(counted.provider, key, 1)
    assert counted.provider.unwrap(key, wrapped, AAD) == data_key
    clock.now += 59
    assert counted.provider.unwrap(key, wrapped, AAD) == data_key
    assert counted.decrypts == 1
    clock.now += 1  # the lifetime is over
    assert counted.provider.unwrap(key, wrapped, AAD) == data_key
    assert counted.decrypts == 2


def test_more_wraps_than_the_size_evict_the_least_recently_used(kms: Kms, clock: Clock) -> None:
    key = kms.new_key()
    counted = Counted(kms.provider(cache_size=2, clock=clock))
    (first_key, first), (second_key, second), (third_key, third) = wraps(counted.provider, key, 3)
    unwrap = counted.provider.unwrap
    assert unwrap(key, first, AAD) == first_key
    assert unwrap(key, second, AAD) == second_key
    assert unwrap(key, first, AAD) == first_key  # a hit: `second` is now the oldest
    assert counted.decrypts == 2
    assert unwrap(key, third, AAD) == third_key  # evicts `second`
    assert counted.decrypts == 3
    assert unwrap(key, first, AAD) == first_key
    assert unwrap(key, third, AAD) == third_key
    assert counted.decrypts == 3
    assert unwrap(key, second, AAD) == second_key
    assert counted.decrypts == 4
    assert len(counted.provider.cache) == 2


def test_a_cached_wrap_opens_only_for_its_own_key_and_context(kms: Kms) -> None:
    key, other_key = kms.new_key(), kms.new_key()
    counted = Counted(kms.provider())
    [(data_key, wrapped)] = wraps(counted.provider, key, 1)
    assert counted.provider.unwrap(key, wrapped, AAD) == data_key
    other_context = SealContext("t", "i2", "stripe").associated_data()
    with pytest.raises(CredentialsUnreadable):
        counted.provider.unwrap(key, wrapped, other_context)
    with pytest.raises((CredentialsUnreadable, KeyUnavailable)):
        counted.provider.unwrap(other_key, wrapped, AAD)
    assert counted.decrypts == 3  # neither was answered from the cache


def test_a_failed_unwrap_is_not_cached(kms: Kms) -> None:
    key = kms.new_key()
    counted = Counted(kms.provider())
    [(_, wrapped)] = wraps(counted.provider, key, 1)
    other_context = SealContext("t", "i2", "stripe").associated_data()
    for _ in range(2):
        with pytest.raises(CredentialsUnreadable):
            counted.provider.unwrap(key, wrapped, other_context)
    assert counted.decrypts == 2


@pytest.mark.parametrize("options", [{"cache_size": 0}, {"cache_seconds": 0}])
def test_the_cache_can_be_turned_off(kms: Kms, options: dict[str, Any]) -> None:
    key = kms.new_key()
    counted = Counted(kms.provider(**options))
    [(data_key, wrapped)] = wraps(counted.provider, key, 1)
    for _ in range(3):
        assert counted.provider.unwrap(key, wrapped, AAD) == data_key
    assert counted.decrypts == 3


def test_the_cache_holds_its_bound_under_threads() -> None:
    cache = UnwrapCache(50, 60)
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            for turn in range(2000):
                name = f"{number}-{turn % 120}".encode()
                if cache.get(name) not in (None, name):
                    errors.append(AssertionError(f"{name!r} holds another value"))
                cache.put(name, name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 50
