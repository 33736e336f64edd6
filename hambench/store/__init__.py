"""The Zarr v3 store: in-memory structures, typed metadata, range reads, the one writer of the format,
shards encoded directly, content checksums and prediction stores.
"""

from ._meta import (  # noqa: F401
    StoreAttrs,
    KINDS,
)
from ._predictions import (  # noqa: F401
    PREDICTIONS_VERSION,
    CHECKSUM_ALGORITHM,
    store_checksum,
    write_predictions,
    open_predictions,
    Predictions,
    gather,
    chunks,
    edge_atoms,
    index_runs,
)
from ._shards import (  # noqa: F401
    encode_shard,
    write_shard,
    shard_key,
    ShardLayout,
    array_metadata,
    group_metadata,
    write_metadata,
)
from ._store import (  # noqa: F401
    STORE_VERSION,
    FIELDS,
    open_store,
    Store,
    StoreRange,
    StoreWriter,
    structure_arrays,
    contiguous_spans,
)
from ._structure import (  # noqa: F401
    Structure,
    file_sha256,
    partner_index,
    HERMITIAN_TOL,
)

__all__ = [
    "StoreAttrs",
    "KINDS",
    "PREDICTIONS_VERSION",
    "CHECKSUM_ALGORITHM",
    "store_checksum",
    "write_predictions",
    "open_predictions",
    "Predictions",
    "gather",
    "chunks",
    "edge_atoms",
    "index_runs",
    "encode_shard",
    "write_shard",
    "shard_key",
    "ShardLayout",
    "array_metadata",
    "group_metadata",
    "write_metadata",
    "STORE_VERSION",
    "FIELDS",
    "open_store",
    "Store",
    "StoreRange",
    "StoreWriter",
    "structure_arrays",
    "contiguous_spans",
    "Structure",
    "file_sha256",
    "partner_index",
    "HERMITIAN_TOL",
]
