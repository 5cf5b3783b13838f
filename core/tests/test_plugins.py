"""Loading plugins: isolation of failures, duplicates, switches, entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest

from relaykit.catalog import DuplicateProviderError
from relaykit.plugins import make_plugin_manager

from .providers_for_tests import Misspelled, OneProvider, Raising, make_provider


def test_catalog_is_sorted_and_attributed() -> None:
    pm = make_plugin_manager(
        load_entrypoints=False,
        plugins=[
            ("zeta", OneProvider(make_provider("zeta"))),
            ("acme", OneProvider(make_provider())),
        ],
    )
    catalog = pm.catalog()
    assert catalog.names == ("acme", "zeta")
    assert catalog.distributions == {"acme": "acme", "zeta": "zeta"}
    assert catalog.errors == ()
    assert catalog.get("acme") is not None and "zeta" in catalog and len(catalog) == 2


def test_a_raising_plugin_is_skipped_and_reported_others_load() -> None:
    pm = make_plugin_manager(
        load_entrypoints=False,
        plugins=[("good", OneProvider(make_provider())), ("bad", Raising())],
    )
    catalog = pm.catalog()
    assert catalog.names == ("acme",)
    [error] = catalog.errors
    assert error.distribution == "bad"
    assert "RuntimeError: boom in plugin" in error.error


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("not a provider", "expected a relaykit.Provider, got str"),
        (make_provider("Bad Name"), "name 'Bad Name' is not a slug"),
        (make_provider(capabilities=()), "capabilities must name at least one"),
        (make_provider(capabilities=("send_sms", "send_sms")), "listed more than once"),
        (make_provider(credential_schema={}), "at least one field"),
        (make_provider(credential_schema={"key": "string"}), "is not a CredentialField"),
        (make_provider(api_base="ftp://x"), "api_base must be an http(s) URL"),
        (make_provider(verify="nope"), "verify must be an async callable"),
        (make_provider(category="Payments!"), "category 'Payments!' is not a slug"),
    ],
)
def test_a_malformed_provider_is_skipped_with_the_reason(returned: object, expected: str) -> None:
    pm = make_plugin_manager(
        load_entrypoints=False,
        plugins=[("good", OneProvider(make_provider("good"))), ("broken", OneProvider(returned))],
    )
    catalog = pm.catalog()
    assert catalog.names == ("good",)
    [error] = catalog.errors
    assert error.distribution == "broken"
    assert expected in error.error


def test_two_plugins_with_one_provider_name_is_an_error_naming_both() -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register_plugin(OneProvider(make_provider()), "first", distribution="relaykit-acme")
    pm.register_plugin(OneProvider(make_provider()), "second", distribution="acme-fork")
    with pytest.raises(DuplicateProviderError) as info:
        pm.catalog()
    assert "relaykit-acme" in str(info.value) and "acme-fork" in str(info.value)
    assert info.value.distributions == ("relaykit-acme", "acme-fork")


def test_a_single_provider_may_be_returned_without_a_list() -> None:
    class Single:
        @staticmethod
        @__import__("relaykit").hookimpl
        def relaykit_providers() -> object:
            return make_provider()

    catalog = make_plugin_manager(load_entrypoints=False, plugins=[("s", Single())]).catalog()
    assert catalog.names == ("acme",)


# -- entry points: fake distributions on sys.path, the way importlib.metadata finds them ---------


def _fake_distribution(root: Path, dist: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[relaykit]\n{module} = {module}\n")


GOOD_PLUGIN = """
    from relaykit import CredentialField, Provider, VerificationResult, hookimpl

    async def verify(credentials, ctx):
        return VerificationResult.accepted()

    async def send(payload, credentials, ctx):
        raise NotImplementedError

    @hookimpl
    def relaykit_providers():
        yield Provider(
            name="{name}", display_name="{name}", category="communication",
            capabilities=("send_sms",),
            credential_schema={{"key": CredentialField(sensitive=True)}},
            api_base="https://example.invalid", verify=verify, operations={{"send_sms": send}},
        )
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if name.startswith("rkfake_"):
                del sys.modules[name]


def test_entry_point_that_fails_to_import_is_skipped_and_named(site: Path) -> None:
    _fake_distribution(site, "rkfake-good", "rkfake_good", GOOD_PLUGIN.format(name="fakegood"))
    _fake_distribution(site, "rkfake-broken", "rkfake_broken", "raise ImportError('no libfoo')\n")
    pm = make_plugin_manager(environ={})
    catalog = pm.catalog()
    assert "fakegood" in catalog
    assert catalog.distributions["fakegood"] == "rkfake-good"
    broken = [e for e in catalog.errors if e.distribution == "rkfake-broken"]
    assert broken and "ImportError: no libfoo" in broken[0].error


def test_strict_mode_reraises_load_errors(site: Path) -> None:
    _fake_distribution(site, "rkfake-broken2", "rkfake_broken2", "raise ImportError('strict')\n")
    with pytest.raises(ImportError, match="strict"):
        make_plugin_manager(environ={"RELAYKIT_STRICT_PLUGINS": "1"})


def test_disabled_plugins_are_not_loaded(site: Path) -> None:
    _fake_distribution(site, "rkfake-off", "rkfake_off", GOOD_PLUGIN.format(name="fakeoff"))
    _fake_distribution(site, "rkfake-on", "rkfake_on", GOOD_PLUGIN.format(name="fakeon"))
    pm = make_plugin_manager(environ={"RELAYKIT_DISABLED_PLUGINS": "rkfake-off, other"})
    catalog = pm.catalog()
    assert "fakeon" in catalog and "fakeoff" not in catalog
    assert "rkfake_off" not in sys.modules


def test_misspelled_hook_is_reported(site: Path) -> None:
    _fake_distribution(
        site,
        "rkfake-typo",
        "rkfake_typo",
        "from relaykit import hookimpl\n\n@hookimpl\ndef relaykit_provider():\n    return []\n",
    )
    pm = make_plugin_manager(environ={})
    errors = [e for e in pm.catalog().errors if e.distribution == "rkfake-typo"]
    assert errors and "relaykit_provider" in errors[0].error
    assert pm.get_plugin("rkfake_typo") is None


def test_misspelled_in_process_hook_fails_loudly_in_strict_mode() -> None:
    pm = make_plugin_manager(load_entrypoints=False, plugins=[("typo", Misspelled())])
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_hook_tracing_writes_to_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="relaykit.plugins")
    pm = make_plugin_manager(
        load_entrypoints=False,
        plugins=[("acme", OneProvider(make_provider()))],
        environ={"RELAYKIT_TRACE_HOOKS": "1"},
    )
    pm.hook.relaykit_providers()
    assert any("relaykit_providers" in r.getMessage() for r in caplog.records)
