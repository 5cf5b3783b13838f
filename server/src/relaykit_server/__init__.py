"""The relaykit REST API."""

from relaykit_server.app import create_app

__all__ = ["create_app"]
