"""Look up item ids: where each query id sits in a table of ids."""

from __future__ import annotations

import numpy as np


def _arrow(x):
    import pyarrow as pa

    if isinstance(x, pa.ChunkedArray):
        return x.combine_chunks()
    if isinstance(x, pa.Array):
        return x
    x = np.asarray(x)
    return pa.array(x.tolist() if x.dtype == object else x)


def map_ids(query_ids, item_ids) -> np.ndarray:
    """Row of each ``query_ids`` value in ``item_ids`` as int64, -1 where absent.

    Accepts numpy arrays, lists or Arrow arrays; ids of different types (integers in one file,
    strings in another) are compared as strings.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    q, v = _arrow(query_ids), _arrow(item_ids)
    if q.type != v.type:
        q, v = q.cast(pa.string()), v.cast(pa.string())
    return pc.index_in(q, value_set=v).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
