"""sidkit: Semantic IDs for item catalogs.

``import sidkit`` is cheap: torch, faiss and polars load only when a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__", "fit", "encode", "encode_batch", "load_model", "open_source", "read_catalog", "RQKMeans", "RQVAE",
    "SidkitError", "audit", "export", "lookup", "sid_report",
]

_LAZY = {
    "fit": ("sidkit.pipeline", "fit"),
    "encode": ("sidkit.pipeline", "encode"),
    "encode_batch": ("sidkit.encoding.kernel", "encode_batch"),
    "open_source": ("sidkit.io.source", "open_source"),
    "load_model": ("sidkit.model.directory", "load_model"),
    "read_catalog": ("sidkit.io.catalog", "read_catalog"),
    "RQKMeans": ("sidkit.quantizers.rqkmeans", "RQKMeans"),
    "RQVAE": ("sidkit.quantizers.rqvae", "RQVAE"),
    "SidkitError": ("sidkit.errors", "SidkitError"),
    "audit": ("sidkit.report.audit", "audit"),
    "export": ("sidkit.formats.export", "export"),
    "lookup": ("sidkit.formats.lookup", "lookup"),
    "sid_report": ("sidkit.metrics", "sid_report"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sidkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
