"""sidkit: Semantic IDs for item catalogs.

Turn a catalog (Parquet: an id column and float-list embedding columns) into short sequences of
codebook tokens, check them, and hand them to a generative recommender.

Jobs (each is also a ``sidkit`` command; every one returns plain dicts or tables)::

    result = sidkit.fit("items.parquet", out="model", method="rqkmeans")   # learn, encode all, write
    sidkit.encode("model", "new_items.parquet", "codes.parquet")          # known items keep their SID
    report = sidkit.audit("model/codes.parquet")                          # collisions, diversity
    sidkit.export("model/codes.parquet", "tokens", "sids.tsv")            # token strings, stack files
    sidkit.lookup("model/codes.parquet", ["<a_3><b_4><c_240>"])           # generated SIDs -> item ids
    sidkit.evaluate(...)                                                  # downstream Recall/NDCG@K
    model = sidkit.load_model("model")                                    # the fitted tokenizer

Estimators, scikit-learn style (``fit(X)``, ``encode(X)``, ``decode(codes)``; ``X`` a float
matrix, e.g. ``sidkit.read_catalog("items.parquet").embeddings["embedding"]``):
:class:`RQKMeans`, :class:`RQVAE` (``RQVAE.fit(X, regularizers=[QuaSID(...)])`` or ``AdaSID``;
simplest through ``sidkit.fit(..., method="quasid" | "adasid")``), and :class:`KAE` (which also
reads attribute columns). Errors are :class:`SidkitError` subclasses with one-line messages.

Subpackages, loaded on first use: :mod:`sidkit.eval` (downstream protocol), :mod:`sidkit.metrics`
(every SID metric), :mod:`sidkit.kae` (plans and slots), :mod:`sidkit.datasets` (planted
catalogs), :mod:`sidkit.encoding` (the batch kernel and the local / Ray / Spark engines),
:mod:`sidkit.formats` (exports and lookup), :mod:`sidkit.model` (the model directory),
:mod:`sidkit.dedup` (suffixes and ZCR), :mod:`sidkit.report` (audit, text and HTML rendering).
README.md's Architecture section maps them.

``import sidkit`` is cheap: torch, faiss and polars load only when a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # jobs
    "fit", "encode", "audit", "export", "lookup", "evaluate", "load_model", "read_catalog", "sid_report",
    # estimators
    "RQKMeans", "RQVAE", "QuaSID", "AdaSID", "KAE",
    # errors
    "SidkitError",
    # subpackages
    "eval", "metrics", "kae", "datasets", "encoding", "formats", "model", "dedup", "report",
]

_LAZY = {
    "fit": ("sidkit.pipeline", "fit"),
    "encode": ("sidkit.pipeline", "encode"),
    "audit": ("sidkit.report.audit", "audit"),
    "export": ("sidkit.formats.export", "export"),
    "lookup": ("sidkit.formats.lookup", "lookup"),
    "evaluate": ("sidkit.eval.run", "evaluate"),
    "load_model": ("sidkit.model.directory", "load_model"),
    "read_catalog": ("sidkit.io.catalog", "read_catalog"),
    "sid_report": ("sidkit.metrics", "sid_report"),
    "RQKMeans": ("sidkit.quantizers.rqkmeans", "RQKMeans"),
    "RQVAE": ("sidkit.quantizers.rqvae", "RQVAE"),
    "QuaSID": ("sidkit.regularizers.quasid", "QuaSID"),
    "AdaSID": ("sidkit.regularizers.adasid", "AdaSID"),
    "KAE": ("sidkit.kae.model", "KAE"),
    "SidkitError": ("sidkit.errors", "SidkitError"),
    # plumbing for engines (documented in docs/scale.md), not in __all__
    "encode_batch": ("sidkit.encoding.kernel", "encode_batch"),
    "open_source": ("sidkit.io.source", "open_source"),
}
_SUBPACKAGES = {"eval", "metrics", "kae", "datasets", "encoding", "formats", "model", "dedup", "report", "io",
                "quantizers", "regularizers", "config", "errors", "methods", "features", "cli"}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"sidkit.{name}")
    raise AttributeError(f"module 'sidkit' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
