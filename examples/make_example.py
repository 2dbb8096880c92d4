"""Make the example catalog and interaction log shipped in ``examples/``.

    python examples/make_example.py            # writes examples/items.parquet, examples/interactions.parquet
    python examples/make_example.py OUT_DIR    # writes them somewhere else

The files are made by sidkit's own generator (:mod:`sidkit.datasets`) and are deterministic:
tests/test_datasets.py checks that the committed files equal what this script makes now.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

try:
    import sidkit.datasets  # noqa: F401
except ModuleNotFoundError:  # run from a source checkout without installing sidkit
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidkit.datasets import make_catalog, make_interactions, write_catalog  # noqa: E402

# Everything that defines the example files lives here.
CATALOG_ARGS = dict(
    n_items=2000, dim=64, n_categories=(8, 4, 4), near_duplicate_frac=0.03, image_dim=0, seed=0
)
INTERACTION_ARGS = dict(n_users=800, min_len=5, max_len=30, seed=0)


def make_tables() -> tuple[pa.Table, pa.Table]:
    """The example (items, interactions) tables."""
    items = make_catalog(**CATALOG_ARGS)
    return items, make_interactions(items, **INTERACTION_ARGS)


def main(out_dir: str | Path = Path(__file__).resolve().parent) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items, interactions = make_tables()
    paths = (out_dir / "items.parquet", out_dir / "interactions.parquet")
    write_catalog(items, paths[0])
    write_catalog(interactions, paths[1])
    for path, table in zip(paths, (items, interactions)):
        print(f"wrote {path} ({table.num_rows} rows, {path.stat().st_size / 1024:.0f} KiB)")
    return paths


if __name__ == "__main__":
    main(*sys.argv[1:2])
