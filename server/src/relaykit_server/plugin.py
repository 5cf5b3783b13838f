"""The server's hooks: it adds ``relaykit serve`` like any plugin adds a command."""

from __future__ import annotations

import click

from relaykit import hookimpl


@hookimpl
def relaykit_cli_commands(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=int)
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int) -> None:
        """Run the API server, with the verification worker inside it."""
        import uvicorn

        from relaykit_server.app import create_app

        state = ctx.obj
        app = create_app(state.settings, plugin_manager=state.plugin_manager)
        uvicorn.run(app, host=host, port=port, log_level=state.settings.log_level.lower())
