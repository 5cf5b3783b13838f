"""The HTTP helpers a provider's callables use: path segments, Retry-After, the API base."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from relaykit import path_segment
from relaykit.provider_http import parse_retry_after, resolve_api_base

from .providers_for_tests import make_provider


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("AC123", "AC123"),
        ("AC/../Calls", "AC%2F..%2FCalls"),
        ("AC?PageSize=1#x", "AC%3FPageSize%3D1%23x"),
        ("a b%", "a%20b%25"),
        ("...", "..."),
        ("\u00e9", "%C3%A9"),
    ],
)
def test_path_segment_quotes_everything_that_would_leave_the_segment(
    value: str, segment: str
) -> None:
    assert path_segment(value) == segment
    # What it returns is one segment, as the client sends it.
    url = httpx.URL(f"https://api.example/v1/{segment}/x")
    assert url.raw_path == f"/v1/{segment}/x".encode()


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_path_segment_refuses_what_no_segment_can_carry(value: str) -> None:
    assert path_segment(value) is None


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30.0)


def test_api_base_override_from_environment() -> None:
    provider = make_provider()
    assert resolve_api_base(provider, {}) == "https://api.acme.example"
    env = {"RELAYKIT_ACME_API_BASE": "http://127.0.0.1:9000/"}
    assert resolve_api_base(provider, env) == "http://127.0.0.1:9000"
