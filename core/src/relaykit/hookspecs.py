"""The hooks relaykit plugins implement.

A plugin is a module registered under the entry-point group ``relaykit``::

    # pyproject.toml of relaykit-acme
    [project.entry-points.relaykit]
    acme = "relaykit_acme"

and it implements any of the hooks below with :data:`hookimpl`. pluggy hooks are
synchronous; what a hook returns may carry async callables (a provider's ``verify``).
Arguments are only ever added to a spec in ways old plugins keep working with: pluggy lets
an implementation accept fewer arguments than the spec names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from relaykit.capabilities import CapabilityContract
    from relaykit.keys import KeyProviderSpec
    from relaykit.providers import Provider

PROJECT_NAME = "relaykit"
ENTRY_POINT_GROUP = "relaykit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: The marker plugins put on their hook implementations.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RelaykitSpecs:
    """Every hook relaykit calls, one method each."""

    @hookspec
    def relaykit_providers(self) -> Iterable[Provider]:
        """Declare the providers this plugin ships.

        Return (or yield) :class:`relaykit.Provider` records. Each provider name must be
        unique across all installed plugins: two plugins declaring one name stop the start-up
        with an error naming both distributions.

        Example:
            .. code-block:: python

                from relaykit import CredentialField, Provider, VerificationResult, hookimpl

                async def verify(credentials, ctx):
                    response = await ctx.http.get("/v1/me", auth=(credentials["api_key"], ""))
                    if response.status_code == 200:
                        return VerificationResult.accepted()
                    return VerificationResult.rejected(f"HTTP {response.status_code}")

                @hookimpl
                def relaykit_providers():
                    yield Provider(
                        name="acme",
                        display_name="Acme SMS",
                        category="communication",
                        capabilities=("send_sms",),
                        credential_schema={"api_key": CredentialField(sensitive=True)},
                        api_base="https://api.acme.example",
                        verify=verify,
                    )
        """
        raise NotImplementedError

    @hookspec
    def relaykit_capabilities(self) -> Iterable[CapabilityContract]:
        """Declare capabilities beyond the standard ones, each with its contract.

        A capability's contract is its input and output Structs; any provider offering the
        capability serves that input and returns that output, so routing can fall back from
        one provider to another. Standard capabilities (``send_sms`` …) need no declaration;
        declaring one of their names again is an error.

        Example:
            .. code-block:: python

                import msgspec
                from relaykit import CapabilityContract, hookimpl

                class SendFaxInput(msgspec.Struct, forbid_unknown_fields=True):
                    to: str
                    document_url: str

                class FaxResult(msgspec.Struct):
                    provider_fax_id: str
                    provider_status: str

                @hookimpl
                def relaykit_capabilities():
                    yield CapabilityContract("send_fax", SendFaxInput, FaxResult, "Send a fax")
        """
        raise NotImplementedError

    @hookspec
    def relaykit_key_providers(self) -> Iterable[KeyProviderSpec]:
        """Offer key providers: what wraps and unwraps the data keys of sealed credentials.

        A key provider (:class:`relaykit.sealing.KeyProvider`) has a ``name`` (recorded in
        every blob it wraps), a ``default_key_id`` property (the key a new database begins
        with), ``wrap(key_id, data_key, associated_data) -> wrapped`` and
        ``unwrap(key_id, wrapped, associated_data) -> data_key``. It raises
        :class:`relaykit.sealing.KeyUnavailable` when it cannot use the key now
        (unreachable, not held, access denied) and
        :class:`relaykit.sealing.CredentialsUnreadable` when a wrapped key fails
        authentication; messages never hold key material. Which key wraps is the database's
        record (``relaykit keys rotate --key-id``), not the provider's;
        ``RELAYKIT_KEY_PROVIDER`` names the provider a new database begins with and rotate
        uses. Every installed provider still unwraps what it wrapped. Check one with
        :class:`relaykit.testing.KeyProviderContractTests`; ``plugins/aws-kms`` is a
        complete example.

        Example:
            .. code-block:: python

                from relaykit import hookimpl
                from relaykit.keys import KeyProviderSpec
                from relaykit.sealing import CredentialsUnreadable, KeyUnavailable

                class VaultTransit:
                    name = "vault"
                    default_key_id = "relaykit-v1"

                    def __init__(self, settings):
                        self.client = make_vault_client()  # the plugin's own settings

                    def wrap(self, key_id, data_key, associated_data):
                        return self.client.encrypt(key_id, data_key, associated_data)

                    def unwrap(self, key_id, wrapped, associated_data):
                        try:
                            return self.client.decrypt(key_id, wrapped, associated_data)
                        except VaultAuthError:
                            raise CredentialsUnreadable("the wrapped key failed authentication")
                        except VaultDown as exc:
                            raise KeyUnavailable(f"vault: {type(exc).__name__}")

                @hookimpl
                def relaykit_key_providers():
                    yield KeyProviderSpec("vault", VaultTransit)
        """
        raise NotImplementedError

    @hookspec
    def relaykit_cli_commands(self, cli: click.Group) -> None:
        """Add commands to the ``relaykit`` command line.

        Example:
            .. code-block:: python

                import click
                from relaykit import hookimpl

                @hookimpl
                def relaykit_cli_commands(cli):
                    @cli.command()
                    def hello():
                        click.echo("hello from acme")
        """
        raise NotImplementedError
