"""The server's hooks: it adds ``relaykit serve`` like any plugin adds a command."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import click

from relaykit import hookimpl, logs
from relaykit.errors import RelaykitError
from relaykit.metrics import MULTIPROC_ENV
from relaykit.services import Services

#: The app factory ``serve --workers N`` gives uvicorn (each process builds its own app).
APP_FACTORY = "relaykit_server.app:create_app"
#: Under RELAYKIT_HOME: the metrics files of ``serve --workers`` when the operator set no
#: PROMETHEUS_MULTIPROC_DIR.
MULTIPROC_FOLDER = "prometheus-multiproc"


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
        default=1,
        show_default=True,
        type=click.IntRange(1, 64),
        help="API processes; with more than one, /metrics sums them all "
        "(PROMETHEUS_MULTIPROC_DIR, docs/observability.md).",
    )
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
        """Run the API server, with the verification worker inside it."""
        import uvicorn

        state = ctx.obj
        settings = state.settings
        try:  # refuse here, with the message, rather than in the server's lifespan
            Services.check_start(settings, state.plugin_manager)
        except RelaykitError as exc:
            raise click.ClickException(str(exc)) from None
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
                "%d API processes; metrics shared through %s", workers, folder
            )
            # Each process builds its app from the environment (settings, entry points).
            uvicorn.run(APP_FACTORY, factory=True, workers=workers, **options)
            return

        from relaykit_server.app import create_app

        app = create_app(settings, plugin_manager=state.plugin_manager)
        uvicorn.run(app, **options)
