"""The distribution as relaykit loads it: the ``aws-kms`` entry point in the ``relaykit``
group, its ``relaykit_key_providers`` hook, and ``RELAYKIT_KEY_PROVIDER=aws-kms``."""

from __future__ import annotations

import importlib.metadata
import secrets
from pathlib import Path

import pytest

from relaykit.hookspecs import ENTRY_POINT_GROUP
from relaykit.keys import KeyProviderSpec, load_key_provider
from relaykit.plugins import make_plugin_manager
from relaykit.sealing import SealContext, open_credentials, read_blob, seal_credentials
from relaykit.settings import Settings
from relaykit_aws_kms import AwsKms

from .kms_stand_in import REGION, Kms


def test_the_entry_point_names_the_module() -> None:
    found = [
        ep
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.name == "aws-kms"
    ]
    assert [ep.value for ep in found] == ["relaykit_aws_kms"]
    assert found[0].dist is not None and found[0].dist.name == "relaykit-aws-kms"


def test_the_plugin_manager_finds_the_key_provider() -> None:
    pm = make_plugin_manager(environ={})
    assert pm.load_errors == []
    specs = [
        spec
        for declared in pm.hook.relaykit_key_providers()
        for spec in ([declared] if isinstance(declared, KeyProviderSpec) else declared)
    ]
    assert [spec.name for spec in specs if spec.name == "aws-kms"] == ["aws-kms"]


def test_selected_by_relaykit_key_provider(
    kms: Kms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = kms.new_key()
    monkeypatch.setenv("RELAYKIT_AWS_KMS_KEY_ID", key)
    monkeypatch.setenv("RELAYKIT_AWS_KMS_ENDPOINT_URL", kms.endpoint)
    monkeypatch.setenv("RELAYKIT_AWS_REGION", REGION)
    settings = Settings.from_env(
        {"RELAYKIT_HOME": str(tmp_path), "RELAYKIT_KEY_PROVIDER": "aws-kms"}
    )
    keys = load_key_provider(settings, make_plugin_manager(environ={}))
    provider = keys.provider_named("aws-kms")
    assert isinstance(provider, AwsKms)
    assert provider.default_key_id == key and provider.endpoint_url == kms.endpoint
    # what the core does with it once the database names the key: seal and open
    keys.set_primary("aws-kms", provider.default_key_id)
    context = SealContext("t", "i", "stripe")
    secret = "sk_canary_" + secrets.token_hex(8)
    sealed = seal_credentials({"secret_key": secret}, context, keys)
    assert (read_blob(sealed).key_provider, read_blob(sealed).key_id) == ("aws-kms", key)
    assert open_credentials(sealed, context, keys) == {"secret_key": secret}
    assert keys.in_process is False  # a network provider: sealing runs in a worker thread


def test_installed_but_not_selected_still_loads_without_a_key_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RELAYKIT_AWS_KMS_KEY_ID", raising=False)
    settings = Settings.from_env({"RELAYKIT_HOME": str(tmp_path)})  # local is selected
    keys = load_key_provider(settings, make_plugin_manager(environ={}))
    assert isinstance(keys.provider_named("aws-kms"), AwsKms)
