"""Settings, read from ``RELAYKIT_*`` environment variables.

:data:`SETTINGS` is the one list of every variable relaykit reads: its name, type, default and
meaning. :meth:`Settings.from_env` parses from it, :func:`read_setting` reads one variable with
the same rules (the plugin manager and :mod:`relaykit.testing` use it), and docs/settings.md is
generated from it (``python -m relaykit.settings > docs/settings.md``); a test checks that the
file is current and that every ``RELAYKIT_*`` name used in the repository is declared here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from relaykit.errors import ConfigurationError

KEYRING_FILE_NAME = "keyring.json"
SQLITE_FILE_NAME = "relaykit.sqlite3"

#: the most API processes ``relaykit serve`` runs (RELAYKIT_WORKERS, ``--workers``)
MAX_WORKERS = 64

#: the values of RELAYKIT_LOG_FORMAT
LOG_FORMATS = ("text", "json")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

Group = Literal["general", "worker", "plugins", "tests"]

#: headings of docs/settings.md, in order
GROUP_TITLES: dict[str, str] = {
    "general": "General",
    "worker": "Verification worker",
    "plugins": "Plugins",
    "tests": "Tests only (read by `relaykit.testing`, not part of `Settings`)",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setting:
    """One ``RELAYKIT_*`` variable.

    ``kind`` is how the text is parsed: ``str``, ``Path`` (``~`` expanded, made absolute),
    ``bool`` (:data:`TRUE_WORDS` / :data:`FALSE_WORDS`), ``int`` and ``float`` (both must be
    positive) or ``tuple`` (comma-separated names). Unset, empty or blank means ``default``.
    A ``<NAME>`` in ``name`` makes it a pattern (any text in its place). ``field`` is the
    :class:`Settings` attribute it fills: by default the name without ``RELAYKIT_``, lowercased;
    ``None`` for the ``tests`` group.
    """

    name: str
    kind: type
    default: Any
    help: str
    group: Group = "general"
    #: the default as the docs show it, when ``default`` alone does not say it
    doc_default: str | None = None
    #: upper-case the value (log levels)
    upper: bool = False
    field: str | None = ""

    def __post_init__(self) -> None:
        if self.field == "":
            derived = None if self.group == "tests" else self.name.removeprefix("RELAYKIT_").lower()
            object.__setattr__(self, "field", derived)

    @property
    def is_pattern(self) -> bool:
        return "<NAME>" in self.name

    def matches(self, name: str) -> bool:
        """Whether the variable ``name`` is this setting (for a pattern, one of its names)."""
        if not self.is_pattern:
            return name == self.name
        prefix, suffix = self.name.split("<NAME>")
        return name.startswith(prefix) and name.endswith(suffix)

    def parse(self, environ: Mapping[str, str]) -> Any:
        """This setting's value in ``environ``: the default when unset or blank."""
        raw = environ.get(self.name)
        if raw is None or raw.strip() == "":
            value = self.default
            return _absolute(value) if isinstance(value, Path) else value
        text = raw.strip()
        if self.kind is bool:
            return _flag(self.name, text)
        if self.kind is int:
            return _positive_int(self.name, raw)
        if self.kind is float:
            return _positive_float(self.name, raw)
        if self.kind is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if self.kind is Path:
            return _absolute(Path(text))
        return text.upper() if self.upper else text


#: Every ``RELAYKIT_*`` setting. Add one here, then regenerate docs/settings.md.
SETTINGS: tuple[Setting, ...] = (
    # general ---------------------------------------------------------------------------------
    Setting(
        name="RELAYKIT_HOME",
        kind=Path,
        default=Path(".relaykit"),
        doc_default="`./.relaykit`",
        help="Data folder: the SQLite file, and the local keyring unless `RELAYKIT_KEYRING` "
        "puts it elsewhere.",
    ),
    Setting(
        name="RELAYKIT_DATABASE_URL",
        kind=str,
        default=None,
        doc_default=f"SQLite file `{SQLITE_FILE_NAME}` in `RELAYKIT_HOME`",
        help="SQLAlchemy URL of the database (SQLite or PostgreSQL).",
    ),
    Setting(
        name="RELAYKIT_LOG_LEVEL",
        kind=str,
        default="INFO",
        upper=True,
        help="Log level of the `relaykit` loggers (any case).",
    ),
    Setting(
        name="RELAYKIT_LOG_FORMAT",
        kind=str,
        default="text",
        help="`text` (one readable line per record) or `json` (one JSON object per line, "
        "with the request id, tenant and integration where known). Either way every record "
        "passes the one redaction step.",
    ),
    Setting(
        name="RELAYKIT_MAX_BODY_BYTES",
        kind=int,
        default=1024 * 1024,
        doc_default="`1048576` (1 MiB)",
        help="Largest request body the API reads; a larger one is a 413.",
    ),
    Setting(
        name="RELAYKIT_WORKERS",
        kind=int,
        default=None,
        doc_default="the cores this process may use (its CPU affinity, fewer under a cgroup v2 "
        "`cpu.max` quota)",
        help="API processes `relaykit serve` runs (`--workers` on its command line wins). With "
        "more than one, exactly one of them runs the embedded verification worker and the "
        f"others wake it (docs/deployment.md). At most {MAX_WORKERS} (a default from more "
        f"cores is cut to {MAX_WORKERS}).",
    ),
    Setting(
        name="RELAYKIT_OPERATION_TIMEOUT",
        kind=float,
        default=15.0,
        help="Seconds one try of an operation (e.g. sending an SMS) may take.",
    ),
    Setting(
        name="RELAYKIT_OPERATION_DEADLINE",
        kind=float,
        default=60.0,
        help="Seconds one operation may take across all its tries (fallbacks included). An "
        "attempt still `in_flight` this long after it started, plus 5 s, belongs to a "
        "process that is gone: the worker settles it as `outcome_unknown`.",
    ),
    Setting(
        name="RELAYKIT_PUBLIC_URL",
        kind=str,
        default=None,
        doc_default="unset",
        help="The URL the providers reach this server at (`https://relay.example.com`; with "
        "the path prefix a proxy strips, if any: `https://example.com/relay`). Webhook URLs are "
        "built from it (`<url>/webhooks/<integration_id>`): "
        "Twilio and Plivo sends carry them as the status callback, and schemes that sign the "
        "URL are checked against it, so a proxy in front is handled. Unset: no callback URL "
        "is sent, and a webhook's URL is the one the server saw.",
    ),
    Setting(
        name="RELAYKIT_WEBHOOK_TOLERANCE",
        kind=float,
        default=300.0,
        help="Seconds a timestamped webhook signature (Stripe's `t=`) may be old or ahead.",
    ),
    Setting(
        name="RELAYKIT_IDEMPOTENCY_KEY_TTL",
        kind=float,
        default=86400.0,
        doc_default="`86400` (24 hours)",
        help="Seconds an `Idempotency-Key` holds after its operation started; then it is "
        "released and the same key starts a new operation.",
    ),
    Setting(
        name="RELAYKIT_RETENTION_DAYS",
        kind=float,
        default=90.0,
        help="Days operations and their delivery attempts are kept; the worker deletes older ones.",
    ),
    Setting(
        name="RELAYKIT_CONSOLE_SESSION_SECONDS",
        kind=float,
        default=28800.0,
        doc_default="`28800` (8 hours)",
        help="Seconds a console sign-in lasts (`/console/`); then the browser signs in again. "
        "Revoking the token it was opened with ends it at once.",
    ),
    Setting(
        name="RELAYKIT_KEY_PROVIDER",
        kind=str,
        default="local",
        help="The key provider a new database begins with, and the one `relaykit keys rotate` "
        "takes the next primary key from (`local`: the keyring at `RELAYKIT_KEYRING`). The "
        "database records which key is primary; every installed provider still unwraps.",
    ),
    Setting(
        name="RELAYKIT_KEYRING",
        kind=Path,
        default=None,
        doc_default="`keyring.json` in `RELAYKIT_HOME`",
        help="The local keyring file (mode 0600, owned by the user relaykit runs as). Created "
        "only on an empty database or by `relaykit keys init`; every node of one database "
        "needs the same keys (docs/deployment.md).",
    ),
    Setting(
        name="RELAYKIT_READ_CACHE",
        kind=bool,
        default=True,
        help="Answer repeated reads from memory until the next commit (SQLite only; "
        "see docs/performance.md).",
    ),
    Setting(
        name="RELAYKIT_<NAME>_API_BASE",
        kind=str,
        default=None,
        field="api_bases",
        doc_default="the provider's own",
        help="Base URL of provider `<NAME>`'s API (tests, staging), e.g. "
        "`RELAYKIT_STRIPE_API_BASE=http://127.0.0.1:9000`.",
    ),
    # worker ----------------------------------------------------------------------------------
    Setting(
        name="RELAYKIT_EMBEDDED_WORKER",
        kind=bool,
        default=True,
        group="worker",
        help="Run the verification worker inside `relaykit serve` (in one of its processes "
        "when it runs several: `RELAYKIT_WORKERS`).",
    ),
    Setting(
        name="RELAYKIT_WORKER_CONCURRENCY",
        kind=int,
        default=16,
        group="worker",
        help="Checks in flight per worker process.",
    ),
    Setting(
        name="RELAYKIT_VERIFY_TIMEOUT",
        kind=float,
        default=10.0,
        group="worker",
        help="Seconds one verification check may take in all (connecting, sending, reading "
        "however slowly the provider answers): a check past it is `transient` and its slot is "
        "freed.",
    ),
    Setting(
        name="RELAYKIT_VERIFY_LEASE",
        kind=float,
        default=60.0,
        group="worker",
        help="Seconds a claimed check is held; must be longer than `RELAYKIT_VERIFY_TIMEOUT` "
        "(checked at start), so a check still running cannot lose its lease to another worker.",
    ),
    Setting(
        name="RELAYKIT_VERIFY_MAX_ATTEMPTS",
        kind=int,
        default=8,
        group="worker",
        help="Transient failures before an integration goes to `error`.",
    ),
    Setting(
        name="RELAYKIT_VERIFY_BACKOFF_BASE",
        kind=float,
        default=2.0,
        group="worker",
        help="Cap of the first retry delay, in seconds.",
    ),
    Setting(
        name="RELAYKIT_VERIFY_BACKOFF_MAX",
        kind=float,
        default=300.0,
        group="worker",
        help="Cap of the largest retry delay, in seconds.",
    ),
    Setting(
        name="RELAYKIT_WORKER_POLL",
        kind=float,
        default=1.0,
        group="worker",
        help="Seconds between polls when nothing wakes the worker.",
    ),
    Setting(
        name="RELAYKIT_WORKER_HEARTBEAT",
        kind=float,
        default=10.0,
        group="worker",
        help="Seconds between a worker's heartbeats (written after a claim pass that reached "
        "the database). `/ready` fails when the worker it watches has not beaten for longer "
        "than this: the embedded worker, or, with `RELAYKIT_EMBEDDED_WORKER` off or in a "
        "process of `relaykit serve` whose worker runs in another of its processes, the "
        "freshest of all worker processes (at least one must be alive). An idle worker "
        "passes at least every half interval, whatever `RELAYKIT_WORKER_POLL` says.",
    ),
    # plugins ---------------------------------------------------------------------------------
    Setting(
        name="RELAYKIT_DISABLED_PLUGINS",
        kind=tuple,
        default=(),
        group="plugins",
        help="Entry-point or distribution names not to load.",
    ),
    Setting(
        name="RELAYKIT_STRICT_PLUGINS",
        kind=bool,
        default=False,
        group="plugins",
        help="Re-raise the first plugin load error instead of skipping the plugin.",
    ),
    Setting(
        name="RELAYKIT_TRACE_HOOKS",
        kind=bool,
        default=False,
        group="plugins",
        help="Log every hook call at debug level (logger `relaykit.plugins`).",
    ),
    # the relaykit-aws-kms key provider (plugins/aws-kms reads these itself) -----------------
    Setting(
        name="RELAYKIT_AWS_KMS_KEY_ID",
        kind=str,
        default=None,
        group="plugins",
        field=None,
        help="relaykit-aws-kms: the KMS key (id or ARN) a new database begins with; later keys "
        "come from `relaykit keys rotate --key-id`.",
    ),
    Setting(
        name="RELAYKIT_AWS_KMS_ENDPOINT_URL",
        kind=str,
        default=None,
        group="plugins",
        field=None,
        help="relaykit-aws-kms: another KMS endpoint (a VPC endpoint, or a stand-in in tests).",
    ),
    Setting(
        name="RELAYKIT_AWS_REGION",
        kind=str,
        default=None,
        group="plugins",
        field=None,
        doc_default="boto3's own chain (`AWS_DEFAULT_REGION`, the profile)",
        help="relaykit-aws-kms: the AWS region of the KMS key.",
    ),
    Setting(
        name="RELAYKIT_AWS_KMS_CACHE_SIZE",
        kind=str,  # parsed by the plugin, which takes 0
        default="1000",
        group="plugins",
        field=None,
        help="relaykit-aws-kms: unwrapped data keys kept in memory (0: none).",
    ),
    Setting(
        name="RELAYKIT_AWS_KMS_CACHE_SECONDS",
        kind=str,  # parsed by the plugin, which takes 0
        default="300",
        group="plugins",
        field=None,
        help="relaykit-aws-kms: how long an unwrapped data key is kept in memory (0: not kept).",
    ),
    # tests -----------------------------------------------------------------------------------
    Setting(
        name="RELAYKIT_TEST_DATABASE_URL",
        kind=str,
        default=None,
        group="tests",
        doc_default="SQLite in each test's temporary folder",
        help="An administrative PostgreSQL URL (`scripts/postgres` prints one): each test gets "
        "a fresh database on that server, dropped after it.",
    ),
    Setting(
        name="RELAYKIT_CHROMIUM",
        kind=str,
        default="/usr/bin/chromium",
        group="tests",
        help="The Chromium the browser tests (tox env `browser`) drive: Debian's `chromium`.",
    ),
    Setting(
        name="RELAYKIT_CHROMEDRIVER",
        kind=str,
        default="/usr/bin/chromedriver",
        group="tests",
        help="The ChromeDriver that drives it: Debian's `chromium-driver`.",
    ),
    Setting(
        name="RELAYKIT_SCREENSHOTS",
        kind=str,
        default=None,
        group="tests",
        doc_default="`screenshots` in tox's work folder (`tests/browser/screenshots` outside tox)",
        help="Where the browser tests keep a screenshot of every page they visit, and the "
        "screenshot and HTML of a page where a test failed.",
    ),
)

_BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
_DEFAULT: dict[str, Any] = {s.field: s.default for s in SETTINGS if s.field}


def find_setting(name: str) -> Setting | None:
    """The declared setting that the variable ``name`` is, or ``None``."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    return next((s for s in SETTINGS if s.is_pattern and s.matches(name)), None)


def read_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One declared setting's value from ``environ`` (default ``os.environ``)."""
    return _BY_NAME[name].parse(os.environ if environ is None else environ)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """The parsed settings (defaults from :data:`SETTINGS`)."""

    home: Path
    database_url: str
    log_level: str = _DEFAULT["log_level"]
    log_format: str = _DEFAULT["log_format"]
    max_body_bytes: int = _DEFAULT["max_body_bytes"]
    #: ``relaykit serve``'s processes (``None``: from the cores)
    workers: int | None = _DEFAULT["workers"]
    embedded_worker: bool = _DEFAULT["embedded_worker"]
    worker_concurrency: int = _DEFAULT["worker_concurrency"]
    verify_timeout: float = _DEFAULT["verify_timeout"]
    verify_lease: float = _DEFAULT["verify_lease"]
    verify_max_attempts: int = _DEFAULT["verify_max_attempts"]
    verify_backoff_base: float = _DEFAULT["verify_backoff_base"]
    verify_backoff_max: float = _DEFAULT["verify_backoff_max"]
    worker_poll: float = _DEFAULT["worker_poll"]
    worker_heartbeat: float = _DEFAULT["worker_heartbeat"]
    operation_timeout: float = _DEFAULT["operation_timeout"]
    operation_deadline: float = _DEFAULT["operation_deadline"]
    idempotency_key_ttl: float = _DEFAULT["idempotency_key_ttl"]
    public_url: str | None = _DEFAULT["public_url"]
    webhook_tolerance: float = _DEFAULT["webhook_tolerance"]
    retention_days: float = _DEFAULT["retention_days"]
    console_session_seconds: float = _DEFAULT["console_session_seconds"]
    key_provider: str = _DEFAULT["key_provider"]
    #: the local keyring file (``RELAYKIT_KEYRING``; unset: ``keyring.json`` in the home)
    keyring: Path = None  # type: ignore[assignment]  # filled in by __post_init__
    read_cache: bool = _DEFAULT["read_cache"]
    disabled_plugins: tuple[str, ...] = _DEFAULT["disabled_plugins"]
    strict_plugins: bool = _DEFAULT["strict_plugins"]
    trace_hooks: bool = _DEFAULT["trace_hooks"]
    #: the ``RELAYKIT_<NAME>_API_BASE`` variables (only these: the rest of the environment
    #: may hold secrets and has no business in a settings object that gets printed)
    api_bases: Mapping[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keyring is None:
            msgspec.structs.force_setattr(self, "keyring", self.home / KEYRING_FILE_NAME)
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(
                f"RELAYKIT_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                f"got {self.log_format!r}"
            )
        if self.workers is not None and self.workers > MAX_WORKERS:
            raise ConfigurationError(
                f"RELAYKIT_WORKERS must be at most {MAX_WORKERS}, got {self.workers}"
            )
        if self.verify_lease <= self.verify_timeout:
            raise ConfigurationError(
                f"RELAYKIT_VERIFY_LEASE ({self.verify_lease:g}s) must be longer than "
                f"RELAYKIT_VERIFY_TIMEOUT ({self.verify_timeout:g}s)"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.field is None:
                continue
            if setting.is_pattern:
                values[setting.field] = {k: v for k, v in env.items() if setting.matches(k)}
            else:
                values[setting.field] = setting.parse(env)
        if values["database_url"] is None:
            values["database_url"] = f"sqlite:///{values['home'] / SQLITE_FILE_NAME}"
        return cls(**values)


# parsing ----------------------------------------------------------------------------------------


def _absolute(path: Path) -> Path:
    return path.expanduser().absolute()


def _flag(name: str, text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(
        f"{name} must be one of {', '.join(TRUE_WORDS)} (on) or {', '.join(FALSE_WORDS)} (off), "
        f"got {text!r}"
    )


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value}")
    return value


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name} must be a positive number, got {raw}")
    return value


# docs/settings.md -------------------------------------------------------------------------------

_TYPE_WORDS: dict[type, str] = {
    str: "text",
    Path: "path",
    bool: "flag",
    int: "whole number > 0",
    float: "number > 0",
    tuple: "comma-separated names",
}


def _doc_default(setting: Setting) -> str:
    if setting.doc_default is not None:
        return setting.doc_default
    value = setting.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == ():
        return "none"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def markdown_table(group: str | None = None) -> str:
    """The settings of ``group`` (default: all) as a Markdown table."""
    rows = [
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        if group is not None and setting.group != group:
            continue
        cells = (
            f"`{setting.name}`",
            _TYPE_WORDS[setting.kind],
            _doc_default(setting),
            setting.help,
        )
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"


def markdown() -> str:
    """The whole of docs/settings.md."""
    parts = [
        "# Settings\n",
        "<!-- Generated from core/src/relaykit/settings.py by "
        "`python -m relaykit.settings > docs/settings.md`; edit the table there, not here. -->\n",
        "relaykit reads its settings from environment variables prefixed `RELAYKIT_`. "
        "Unset, empty or blank means the default.\n",
        f"- **flag**: on is {', '.join(f'`{w}`' for w in TRUE_WORDS)}, off is "
        f"{', '.join(f'`{w}`' for w in FALSE_WORDS)} (any case, surrounding spaces ignored); "
        "any other value is an error naming the variable and these words.\n"
        "- **numbers** must be positive and finite; durations are in seconds.\n"
        "- Only the `RELAYKIT_<NAME>_API_BASE` variables are kept from the rest of the "
        "environment, so printing the settings shows no other variable.\n",
    ]
    for group, title in GROUP_TITLES.items():
        parts.append(f"## {title}\n")
        parts.append(markdown_table(group))
    return "\n".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
