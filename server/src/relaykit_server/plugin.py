"""The server's hooks: it adds ``relaykit serve`` like any plugin adds a command."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from relaykit import hookimpl, logs
from relaykit.errors import RelaykitError
from relaykit.metrics import MULTIPROC_ENV
from relaykit.services import Services
from relaykit.settings import MAX_WORKERS, Settings

if TYPE_CHECKING:
    from litestar import Litestar

#: The app factory ``serve --workers N`` gives uvicorn (each process builds its own app).
APP_FACTORY = "relaykit_server.plugin:create_process_app"
#: Under RELAYKIT_HOME: the metrics files of ``serve --workers`` when the operator set no
#: PROMETHEUS_MULTIPROC_DIR.
MULTIPROC_FOLDER = "prometheus-multiproc"
#: The cgroup v2 CPU limit of this process's container: ``QUOTA PERIOD`` or ``max PERIOD``.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: those its CPU affinity allows (else the machine's),
    fewer when a cgroup v2 quota in ``cpu.max`` grants less time (a 1.5-CPU quota is 2);
    at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity on this platform
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):  # no cgroup v2 limit, or unreadable
        pass
    return max(1, cores)


def process_count(
    option: int | None, settings: Settings, *, cpu_max: Path = CGROUP_CPU_MAX
) -> tuple[int, str]:
    """How many API processes ``serve`` runs, and what said so: ``--workers``, else
    ``RELAYKIT_WORKERS``, else the cores this process may use (at most :data:`MAX_WORKERS`)."""
    if option is not None:
        return option, "--workers"
    if settings.workers is not None:
        return settings.workers, "RELAYKIT_WORKERS"
    return min(usable_cores(cpu_max), MAX_WORKERS), "the cores"


def create_process_app() -> Litestar:
    """The app of one of the processes ``serve --workers N`` starts (uvicorn calls it in
    each): settings and plugins from the environment, one embedded worker among the
    processes (relaykit.worker_lock)."""
    from relaykit_server.app import create_app

    return create_app(shared_worker=True)


def prepare_multiprocess_metrics(home: Path) -> str:
    """``PROMETHEUS_MULTIPROC_DIR`` for the processes about to start: the operator's, or a
    folder under ``home`` emptied now (counts left by an earlier run would add up with the
    new ones). Set in this process's environment, which the workers inherit: prometheus-
    client reads it when they import it."""
    chosen = os.environ.get(MULTIPROC_ENV)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return chosen
    folder = home / MULTIPROC_FOLDER
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return str(folder)


@hookimpl
def relaykit_cli_commands(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=int)
    @click.option(
        "--workers",
        default=None,
        type=click.IntRange(1, MAX_WORKERS),
        show_default=f"RELAYKIT_WORKERS, else the cores this process may use, at most "
        f"{MAX_WORKERS}",
        help="API processes. With more than one, one of them runs the embedded verification "
        "worker and the others wake it; /metrics sums them all (PROMETHEUS_MULTIPROC_DIR, "
        "docs/observability.md).",
    )
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int, workers: int | None) -> None:
        """Run the API server, with the verification worker inside it."""
        import uvicorn

        state = ctx.obj
        settings = state.settings
        try:  # refuse here, with the message, rather than in the server's lifespan
            state.plugin_manager.catalog()  # two plugins claiming one provider name
            Services.check_start(settings, state.plugin_manager)
        except RelaykitError as exc:
            raise click.ClickException(str(exc)) from None
        workers, source = process_count(workers, settings)
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": settings.log_level.lower(),
            # relaykit's formatter (RELAYKIT_LOG_FORMAT) for uvicorn's loggers too, in every
            # process; uvicorn's access log is off: relaykit.access logs each request with
            # its request id instead.
            "log_config": logs.config(settings.log_level, settings.log_format),
            "access_log": False,
        }
        if workers > 1:
            folder = prepare_multiprocess_metrics(settings.home)
            logging.getLogger("relaykit.server").info(
                "%d API processes (from %s); metrics shared through %s", workers, source, folder
            )
            run_processes(workers, options)
            return

        from relaykit_server.app import create_app

        app = create_app(settings, plugin_manager=state.plugin_manager)
        uvicorn.run(app, **options)


def run_processes(workers: int, options: dict[str, Any]) -> None:
    """``uvicorn.run(APP_FACTORY, factory=True, workers=workers, **options)``, except that a
    start-up failure in the processes ends the command with uvicorn's start-up failure status
    (uvicorn.run itself exits 0 then when it runs several)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, **options)
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
