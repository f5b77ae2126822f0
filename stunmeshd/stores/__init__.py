"""Store plugins: where sealed endpoint records live (DNS, DHT, a program, ...).

Use :func:`create_store` to build one from a ``plugins.<name>`` block and
:func:`publish` to write through it (honouring ``dedup``).
"""

from stunmeshd.stores.base import Store
from stunmeshd.stores.dedup import DedupStore, publish
from stunmeshd.stores.registry import builtin_names, create_store

__all__ = ["DedupStore", "Store", "builtin_names", "create_store", "publish"]
