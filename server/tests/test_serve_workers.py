"""How many API processes ``relaykit serve`` runs: ``--workers``, else ``RELAYKIT_WORKERS``,
else the cores this process may use (its CPU affinity, fewer under a cgroup v2 quota).
``tests/test_serve_processes.py`` runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relaykit.errors import ConfigurationError
from relaykit.settings import MAX_WORKERS, Settings
from relaykit_server.plugin import process_count, usable_cores

AFFINITY = len(os.sched_getaffinity(0))


def cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


def test_without_a_cgroup_limit_the_cores_are_the_affinity(tmp_path: Path) -> None:
    assert usable_cores(tmp_path / "absent") == AFFINITY
    assert usable_cores(cpu_max(tmp_path, "max 100000\n")) == AFFINITY


@pytest.mark.parametrize(
    ("quota", "cores"),
    [
        ("50000 100000", 1),  # half a CPU: still one process
        ("100000 100000", 1),
        ("150000 100000", 2),  # a part of a CPU counts as one
        ("200000 100000", 2),
        ("6400000 100000", 64),
    ],
)
def test_a_cgroup_quota_allows_at_most_its_cpus(tmp_path: Path, quota: str, cores: int) -> None:
    assert usable_cores(cpu_max(tmp_path, quota + "\n")) == min(AFFINITY, cores)


@pytest.mark.parametrize("text", ["", "garbage", "100000", "abc 100000", "100000 0"])
def test_an_unreadable_cpu_max_is_ignored(tmp_path: Path, text: str) -> None:
    assert usable_cores(cpu_max(tmp_path, text)) == AFFINITY


def test_the_cores_follow_the_process_affinity(tmp_path: Path) -> None:
    """A process pinned to one core (as ``taskset -c 0`` would) counts one."""
    one = min(os.sched_getaffinity(0))
    code = (
        "import os, sys; from pathlib import Path; "
        f"os.sched_setaffinity(0, {{{one}}}); "
        "from relaykit_server.plugin import usable_cores; "
        "print(usable_cores(Path(sys.argv[1])))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "1"


def settings(tmp_path: Path, workers: str | None = None) -> Settings:
    env = {"RELAYKIT_HOME": str(tmp_path)}
    if workers is not None:
        env["RELAYKIT_WORKERS"] = workers
    return Settings.from_env(env)


def test_the_command_line_wins_then_the_setting_then_the_cores(tmp_path: Path) -> None:
    one_cpu = cpu_max(tmp_path, "100000 100000")
    assert process_count(3, settings(tmp_path, "5"), cpu_max=one_cpu) == (3, "--workers")
    assert process_count(None, settings(tmp_path, "5"), cpu_max=one_cpu) == (
        5,
        "RELAYKIT_WORKERS",
    )
    assert process_count(None, settings(tmp_path), cpu_max=one_cpu) == (1, "the cores")
    assert process_count(None, settings(tmp_path, " "), cpu_max=tmp_path / "absent") == (
        min(AFFINITY, MAX_WORKERS),
        "the cores",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "RELAYKIT_WORKERS must be positive, got 0"),
        ("-2", "RELAYKIT_WORKERS must be positive, got -2"),
        ("two", "RELAYKIT_WORKERS must be a whole number, got 'two'"),
        ("1.5", "RELAYKIT_WORKERS must be a whole number, got '1.5'"),
        ("65", f"RELAYKIT_WORKERS must be at most {MAX_WORKERS}, got 65"),
    ],
)
def test_a_bad_workers_setting_is_refused(tmp_path: Path, raw: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings(tmp_path, raw)
    assert str(caught.value) == message


def test_unset_or_blank_means_from_the_cores(tmp_path: Path) -> None:
    assert settings(tmp_path).workers is None
    assert settings(tmp_path, "").workers is None
    assert settings(tmp_path, " 4 ").workers == 4
    assert settings(tmp_path, str(MAX_WORKERS)).workers == MAX_WORKERS


def test_serve_help_says_the_default_comes_from_the_cores(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
    env["RELAYKIT_HOME"] = str(tmp_path / "home")
    shown = subprocess.run(
        [sys.executable, "-m", "relaykit", "serve", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    flat = " ".join(shown.split())
    assert "RELAYKIT_WORKERS, else the cores this process may use" in flat
    assert "one of them runs the embedded verification worker" in flat


def test_a_bad_workers_setting_stops_serve_with_its_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYKIT_")}
    env.update(RELAYKIT_HOME=str(tmp_path / "home"), RELAYKIT_WORKERS="many")
    result = subprocess.run(
        [sys.executable, "-m", "relaykit", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    # (the CLI shows every bad setting as its exception, traceback and all: relaykit.cli)
    assert "RELAYKIT_WORKERS must be a whole number, got 'many'" in result.stderr
