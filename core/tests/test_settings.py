"""The settings table: parsing, the generated docs, and that every name used is declared."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec
import pytest

from relaykit.errors import ConfigurationError
from relaykit.plugins import make_plugin_manager
from relaykit.settings import (
    FALSE_WORDS,
    SETTINGS,
    TRUE_WORDS,
    Settings,
    find_setting,
    markdown,
    read_setting,
)

ROOT = Path(__file__).resolve().parents[2]
#: names this file makes up are spelled ``P + "..."``, so the scan below does not see them
P = "RELAYKIT_"
DOC = ROOT / "docs" / "settings.md"

FLAGS = [s.name for s in SETTINGS if s.kind is bool]
INTS = [s.name for s in SETTINGS if s.kind is int]
FLOATS = [s.name for s in SETTINGS if s.kind is float]


def field_of(name: str) -> str:
    field = find_setting(name).field  # type: ignore[union-attr]
    assert field is not None
    return field


# the table --------------------------------------------------------------------------------------


def test_the_table_and_the_settings_struct_agree() -> None:
    fields = {s.field for s in SETTINGS if s.field is not None}
    assert fields == set(Settings.__struct_fields__)
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"RELAYKIT_(<NAME>_)?[A-Z0-9_]+", n) for n in names)
    assert all(s.help.strip() for s in SETTINGS)


def test_defaults() -> None:
    settings = Settings.from_env({"RELAYKIT_HOME": "/srv/rk"})
    assert settings.home == Path("/srv/rk")
    assert settings.database_url == "sqlite:////srv/rk/relaykit.sqlite3"
    for setting in SETTINGS:
        if setting.field in {"home", "database_url", "keyring", "api_bases", None}:
            continue
        assert getattr(settings, setting.field) == setting.default, setting.name
    assert settings.keyring == Path("/srv/rk/keyring.json")
    assert settings.disabled_plugins == ()
    assert settings.strict_plugins is False and settings.trace_hooks is False
    assert settings.embedded_worker is True and settings.read_cache is True
    assert settings.api_bases == {}
    assert Settings.from_env({}).home == Path(".relaykit").absolute()


def test_the_keyring_may_live_outside_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"RELAYKIT_HOME": "/srv/rk", "RELAYKIT_KEYRING": "keys/kr.json"})
    assert settings.keyring == tmp_path / "keys" / "kr.json"  # made absolute
    assert settings.database_url == "sqlite:////srv/rk/relaykit.sqlite3"
    assert Settings.from_env({"RELAYKIT_KEYRING": "~/kr.json"}).keyring == Path.home() / "kr.json"


@pytest.mark.parametrize("name", [s.name for s in SETTINGS if not s.is_pattern])
@pytest.mark.parametrize("blank", ["", "   "])
def test_empty_means_the_default(name: str, blank: str) -> None:
    setting = find_setting(name)
    assert setting is not None
    assert read_setting(name, {name: blank}) == read_setting(name, {})
    if setting.field is not None:
        assert Settings.from_env({name: blank}) == Settings.from_env({})


# flags ------------------------------------------------------------------------------------------


def _spellings(words: Iterable[str]) -> Iterator[str]:
    for word in words:
        yield from {word, word.upper(), word.capitalize(), f"  {word}\t"}


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("raw", sorted(_spellings(TRUE_WORDS)))
def test_every_true_spelling(name: str, raw: str) -> None:
    assert read_setting(name, {name: raw}) is True
    assert getattr(Settings.from_env({name: raw}), field_of(name)) is True


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("raw", sorted(_spellings(FALSE_WORDS)))
def test_every_false_spelling(name: str, raw: str) -> None:
    assert read_setting(name, {name: raw}) is False
    assert getattr(Settings.from_env({name: raw}), field_of(name)) is False


@pytest.mark.parametrize("name", FLAGS)
@pytest.mark.parametrize("raw", ["2", "y", "enabled", "disable", "tru", "1 0", "-1"])
def test_a_bad_flag_is_an_error_naming_the_variable_and_the_words(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: raw})
    message = str(caught.value)
    assert name in message and repr(raw.strip()) in message
    assert all(word in message for word in (*TRUE_WORDS, *FALSE_WORDS))


def test_the_plugin_manager_reads_its_switches_with_the_same_parser() -> None:
    with pytest.raises(ConfigurationError, match="RELAYKIT_TRACE_HOOKS"):
        make_plugin_manager(load_entrypoints=False, environ={"RELAYKIT_TRACE_HOOKS": "maybe"})
    with pytest.raises(ConfigurationError, match="RELAYKIT_STRICT_PLUGINS"):
        make_plugin_manager(environ={"RELAYKIT_STRICT_PLUGINS": "sure"})
    make_plugin_manager(load_entrypoints=False, environ={"RELAYKIT_TRACE_HOOKS": " Off "})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a", ("a",)),
        ("a,b", ("a", "b")),
        (" rkfake-off , other ,, ", ("rkfake-off", "other")),
        (",", ()),
    ],
)
def test_disabled_plugins(raw: str, expected: tuple[str, ...]) -> None:
    assert Settings.from_env({"RELAYKIT_DISABLED_PLUGINS": raw}).disabled_plugins == expected
    assert read_setting("RELAYKIT_DISABLED_PLUGINS", {"RELAYKIT_DISABLED_PLUGINS": raw}) == expected


# numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", INTS)
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ten", "must be a whole number, got 'ten'"),
        ("1.5", "must be a whole number, got '1.5'"),
        ("0", "must be positive, got 0"),
        ("-3", "must be positive, got -3"),
    ],
)
def test_a_bad_whole_number(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(f"{name} {message}")):
        Settings.from_env({name: raw})


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("soon", "must be a number, got 'soon'"),
        ("0", "must be a positive number, got 0"),
        ("-1.5", "must be a positive number, got -1.5"),
        ("nan", "must be a positive number, got nan"),
        ("inf", "must be a positive number, got inf"),
    ],
)
def test_a_bad_number(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(f"{name} {message}")):
        Settings.from_env({name: raw})


def test_numbers_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "RELAYKIT_MAX_BODY_BYTES": " 2048 ",
            "RELAYKIT_WORKER_CONCURRENCY": "4",
            "RELAYKIT_VERIFY_TIMEOUT": "2.5",
            "RELAYKIT_VERIFY_LEASE": "30",
            "RELAYKIT_WORKER_POLL": "0.05",
        }
    )
    assert settings.max_body_bytes == 2048 and settings.worker_concurrency == 4
    assert settings.verify_timeout == 2.5 and settings.verify_lease == 30.0
    assert settings.worker_poll == 0.05


@pytest.mark.parametrize(("lease", "timeout"), [("5", "5"), ("5", "10"), ("59", "60")])
def test_the_lease_must_outlast_the_timeout(lease: str, timeout: str) -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"RELAYKIT_VERIFY_LEASE \(\d+s\) must be longer than RELAYKIT_VERIFY_TIMEOUT",
    ):
        Settings.from_env({"RELAYKIT_VERIFY_LEASE": lease, "RELAYKIT_VERIFY_TIMEOUT": timeout})


def test_a_lease_longer_than_the_timeout_is_fine() -> None:
    settings = Settings.from_env({"RELAYKIT_VERIFY_LEASE": "11", "RELAYKIT_VERIFY_TIMEOUT": "10"})
    assert settings.verify_lease == 11.0


# text -------------------------------------------------------------------------------------------


def test_text_settings() -> None:
    settings = Settings.from_env(
        {
            "RELAYKIT_HOME": "~/rk",
            "RELAYKIT_DATABASE_URL": "postgresql+psycopg://db/relaykit",
            "RELAYKIT_LOG_LEVEL": "debug",
            "RELAYKIT_KEY_PROVIDER": "toykms",
        }
    )
    assert settings.home == Path("~/rk").expanduser()
    assert settings.database_url == "postgresql+psycopg://db/relaykit"
    assert settings.log_level == "DEBUG"
    assert settings.key_provider == "toykms"


def test_the_test_database_url_is_declared_but_not_a_setting() -> None:
    setting = find_setting("RELAYKIT_TEST_DATABASE_URL")
    assert setting is not None and setting.field is None and setting.group == "tests"
    assert read_setting(setting.name, {}) is None
    url = "postgresql+psycopg://x@127.0.0.1/postgres"
    assert read_setting(setting.name, {setting.name: url}) == url


def test_printed_settings_hold_nothing_else_from_the_environment() -> None:
    env = {
        "RELAYKIT_HOME": "/srv/rk",
        "RELAYKIT_STRIPE_API_BASE": "http://127.0.0.1:9000",
        "RELAYKIT_ACME_SMS_API_BASE": "http://127.0.0.1:9001",
        "AWS_SECRET_ACCESS_KEY": "hunter2-aws",
        "STRIPE_API_KEY": "sk_live_hunter2",
        P + "SOMETHING_ELSE": "hunter2-relaykit",
        "API_BASE": "http://not-ours",
        "PATH": "/usr/bin",
    }
    settings = Settings.from_env(env)
    assert settings.api_bases == {
        "RELAYKIT_STRIPE_API_BASE": "http://127.0.0.1:9000",
        "RELAYKIT_ACME_SMS_API_BASE": "http://127.0.0.1:9001",
    }
    for text in (repr(settings), str(settings), str(msgspec.structs.asdict(settings))):
        assert "hunter2" not in text
        for name in ("AWS_SECRET_ACCESS_KEY", "STRIPE_API_KEY", P + "SOMETHING_ELSE", "PATH"):
            assert name not in text


# docs and use -----------------------------------------------------------------------------------


def test_docs_settings_md_is_generated_from_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == markdown(), (
        "docs/settings.md is stale: run `python -m relaykit.settings > docs/settings.md`"
    )


SCANNED = (
    "core/src",
    "server/src",
    "plugins/*/src",
    "plugins/*/tests",
    "bench",
    "scripts",
    "tox.ini",
    ".ci",
    "tests",
    "core/tests",
    "server/tests",
    "docs",
    "README.md",
)
SKIPPED_PARTS = {"__pycache__", ".tox", ".venv", "node_modules"}

# A name, or a name built at run time: the ``{...}`` of an f-string, the ``${...}`` of a
# template and the ``<...>`` of the docs stand for any text; a trailing ``_`` or ``*`` makes it a
# prefix (``RELAYKIT_*``, ``startswith("RELAYKIT_")``).
_USE = re.compile(r"RELAYKIT_(?:[A-Z0-9_]|\$?\{[^{}\n]*\}|<[A-Za-z_]+>)*\*?")
_PLACEHOLDER = re.compile(r"\$?\{[^{}\n]*\}|<[A-Za-z_]+>")


def scanned_files(root: Path) -> Iterator[Path]:
    for pattern in SCANNED:
        for top in sorted(root.glob(pattern)):
            paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
            for path in paths:
                if SKIPPED_PARTS.isdisjoint(path.relative_to(root).parts):
                    yield path


def undeclared_uses(root: Path, documented: str) -> list[str]:
    """``file:line: name`` for each RELAYKIT_* name not in the table or not in ``documented``."""
    names = [s.name for s in SETTINGS]
    problems = []
    seen: set[Path] = set()
    for path in scanned_files(root):
        if path in seen:
            continue
        seen.add(path)
        data = path.read_bytes()
        if b"\0" in data:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            for match in _USE.finditer(line):
                used = match.group()
                name = _PLACEHOLDER.sub("<NAME>", used).rstrip("*")
                if name.endswith("_"):
                    ok = any(n.startswith(name) for n in names)
                else:
                    setting = find_setting(name)
                    ok = setting is not None and f"`{setting.name}`" in documented
                if not ok:
                    problems.append(f"{path.relative_to(root)}:{number}: {used}")
    return problems


def test_every_name_used_is_declared_and_documented() -> None:
    assert undeclared_uses(ROOT, DOC.read_text(encoding="utf-8")) == []


def test_every_declared_name_is_documented() -> None:
    documented = DOC.read_text(encoding="utf-8")
    assert [s.name for s in SETTINGS if f"`{s.name}`" not in documented] == []


def test_the_scan_catches_an_undeclared_name(tmp_path: Path) -> None:
    fake, dynamic, prefix = P + "NOT_A_SETTING", P + "{name}", P + "NOPE_*"
    (tmp_path / "core" / "src").mkdir(parents=True)
    (tmp_path / "tox.ini").write_text(f"set_env = {fake}=1\n")
    (tmp_path / "core" / "src" / "m.py").write_text(
        'import os\nos.environ.get("RELAYKIT_HOME")\n'
        f'os.environ.get("{fake}")\n'
        'f"RELAYKIT_{name.upper()}_API_BASE"\n'
        f'f"{dynamic}"\n'
        f'"RELAYKIT_VERIFY_*", "{prefix}"\n'
    )
    found = [
        f"core/src/m.py:3: {fake}",
        f"core/src/m.py:5: {dynamic}",
        f"core/src/m.py:6: {prefix}",
        f"tox.ini:1: {fake}",
    ]
    assert undeclared_uses(tmp_path, markdown()) == found
    # declared but missing from the docs
    assert undeclared_uses(tmp_path, markdown().replace("`RELAYKIT_HOME`", "")) == [
        "core/src/m.py:2: RELAYKIT_HOME",
        *found,
    ]
