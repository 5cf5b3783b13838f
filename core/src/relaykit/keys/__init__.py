"""Key custody: the key providers relaykit wraps data keys with, and moving rows between keys.

* :mod:`relaykit.keys.local`: the built-in local keyring;
* :mod:`relaykit.keys.loading`: key providers from plugins, the selected one and the rest
  (:func:`load_key_provider`, :class:`KeySet`, :class:`KeyProviderSpec`);
* :mod:`relaykit.keys.rewrap`: ``relaykit keys rewrap`` and ``keys status``.

The envelope itself (sealing a row's credentials under a data key) and the key-provider
protocol are :mod:`relaykit.sealing`.
"""

from relaykit.keys.loading import KeyProviderSpec, KeySet, load_key_provider
from relaykit.keys.local import LocalKeyring
from relaykit.keys.rewrap import RewrapProgress, key_usage, rewrap_all, sealed_row_count

__all__ = [
    "KeyProviderSpec",
    "KeySet",
    "LocalKeyring",
    "RewrapProgress",
    "key_usage",
    "load_key_provider",
    "rewrap_all",
    "sealed_row_count",
]
