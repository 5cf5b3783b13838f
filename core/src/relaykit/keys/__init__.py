"""Key custody: the key providers relaykit wraps data keys with, and moving rows between keys.

* :mod:`relaykit.keys.local`: the built-in local keyring;
* :mod:`relaykit.keys.custody`: the primary key, recorded in the database, and start-up checks;
* :mod:`relaykit.keys.loading`: key providers from plugins, the selected one and the rest
  (:func:`load_key_provider`, :class:`KeySet`, :class:`KeyProviderSpec`);
* :mod:`relaykit.keys.rewrap`: ``relaykit keys rewrap`` and ``keys status``.

The envelope itself (sealing a row's credentials under a data key) and the key-provider
protocol are :mod:`relaykit.sealing`.
"""

from relaykit.keys import custody
from relaykit.keys.loading import (
    KeyProviderSpec,
    KeySet,
    load_key_provider,
    local_key_set,
    probe_key,
)
from relaykit.keys.local import KeyringExists, KeyringMissing, LocalKeyring
from relaykit.keys.rewrap import RewrapProgress, key_usage, rewrap_all, sealed_row_count

__all__ = [
    "KeyProviderSpec",
    "KeySet",
    "KeyringExists",
    "KeyringMissing",
    "LocalKeyring",
    "RewrapProgress",
    "custody",
    "key_usage",
    "load_key_provider",
    "local_key_set",
    "probe_key",
    "rewrap_all",
    "sealed_row_count",
]
