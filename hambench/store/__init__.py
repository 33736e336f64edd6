"""The Zarr v3 store: the schema, typed attributes parsed once on open, the one in-memory batch of structures
(:class:`StoreRange`), range reads, the one writer of the format, shards encoded directly, content checksums,
split selection, store statistics, prediction stores, and integrity: shard manifests checked on every open,
``verify_store`` for everything else.
"""

from . import _schema, _meta, _structure, _range, _integrity, _store, _read, _splits, _shards, _write, _checksum, _stats, _predictions, _verify
from ._schema import *  # noqa: F401,F403
from ._meta import *  # noqa: F401,F403
from ._structure import *  # noqa: F401,F403
from ._range import *  # noqa: F401,F403
from ._integrity import *  # noqa: F401,F403
from ._store import *  # noqa: F401,F403
from ._read import *  # noqa: F401,F403
from ._splits import *  # noqa: F401,F403
from ._shards import *  # noqa: F401,F403
from ._write import *  # noqa: F401,F403
from ._checksum import *  # noqa: F401,F403
from ._stats import *  # noqa: F401,F403
from ._predictions import *  # noqa: F401,F403
from ._verify import *  # noqa: F401,F403

#: the public names of the private modules (each module's own ``__all__``)
__all__ = [*_schema.__all__, *_meta.__all__, *_structure.__all__, *_range.__all__, *_integrity.__all__, *_store.__all__, *_read.__all__, *_splits.__all__, *_shards.__all__, *_write.__all__, *_checksum.__all__, *_stats.__all__, *_predictions.__all__, *_verify.__all__]
