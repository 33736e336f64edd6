"""The Zarr v3 store: the schema, typed attributes parsed once on open, the one in-memory batch of structures
(:class:`StoreRange`), range reads, the one writer of the format, shards encoded directly, content checksums,
split selection, store statistics and prediction stores.
"""

from ._schema import (  # noqa: F401
    STORE_VERSION,
    FIELDS,
    ROWS,
    PTRS,
    ArraySpec,
    array_specs,
    chunk_layout,
    row_kind,
)
from ._meta import (  # noqa: F401
    KINDS,
    StoreCounts,
    StoreMeta,
    StoreAttrs,
)
from ._structure import (  # noqa: F401
    Structure,
    file_sha256,
    resolved_path,
    partner_index,
    HERMITIAN_TOL,
)
from ._range import (  # noqa: F401
    StoreRange,
    offsets,
    edge_endpoints,
)
from ._store import (  # noqa: F401
    open_store,
    as_store,
    Store,
)
from ._read import (  # noqa: F401
    contiguous_spans,
    index_runs,
    chunks,
    read_spans,
    gather,
)
from ._splits import (  # noqa: F401
    parse_split,
    select_split,
)
from ._shards import (  # noqa: F401
    encode_shard,
    write_shard,
    shard_key,
    array_metadata,
    group_metadata,
    write_metadata,
)
from ._write import (  # noqa: F401
    StoreWriter,
    write_array_shard,
)
from ._checksum import (  # noqa: F401
    CHECKSUM_ALGORITHM,
    store_checksum,
)
from ._stats import (  # noqa: F401
    edge_cutoffs,
)
from ._predictions import (  # noqa: F401
    PREDICTIONS_VERSION,
    write_predictions,
    open_predictions,
    Predictions,
)

__all__ = [
    "STORE_VERSION",
    "FIELDS",
    "ROWS",
    "PTRS",
    "ArraySpec",
    "array_specs",
    "chunk_layout",
    "row_kind",
    "KINDS",
    "StoreCounts",
    "StoreMeta",
    "StoreAttrs",
    "Structure",
    "file_sha256",
    "resolved_path",
    "partner_index",
    "HERMITIAN_TOL",
    "StoreRange",
    "offsets",
    "edge_endpoints",
    "open_store",
    "as_store",
    "Store",
    "contiguous_spans",
    "index_runs",
    "chunks",
    "read_spans",
    "gather",
    "parse_split",
    "select_split",
    "encode_shard",
    "write_shard",
    "shard_key",
    "array_metadata",
    "group_metadata",
    "write_metadata",
    "StoreWriter",
    "write_array_shard",
    "CHECKSUM_ALGORITHM",
    "store_checksum",
    "edge_cutoffs",
    "PREDICTIONS_VERSION",
    "write_predictions",
    "open_predictions",
    "Predictions",
]
