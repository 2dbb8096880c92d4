"""SID-quality metrics (DESIGN.md §4, METHODS.md §6.1).

The main entry is :func:`sid_report`. The core blocks (``collision``, ``levels``, ``prefix``,
``diversity``, ``hamming``) need only the codes and run in about the time of one
``np.unique`` over packed keys; ``semantic``, ``collaborative`` and ``compare`` are added when
their inputs are given.
"""

from __future__ import annotations


from sidkit.metrics.buckets import check_codes
from sidkit.metrics.collision import collision_metrics
from sidkit.metrics.core import CORE_KEYS, core_report
from sidkit.metrics.diversity import diversity_metrics
from sidkit.metrics.hamming import hamming_metrics
from sidkit.metrics.levels import level_metrics
from sidkit.metrics.prefix import prefix_metrics

__all__ = [
    "sid_report", "core_report", "collision_metrics", "level_metrics", "prefix_metrics",
    "diversity_metrics", "hamming_metrics", "semantic_metrics", "collaborative_metrics",
    "compare_metrics", "CORE_KEYS",
]

def sid_report(codes, codebook_sizes=None, *, item_ids=None, embeddings=None, leaf=None, attributes=None,
               titles=None, interactions=None, baseline=None, seed: int = 0, n_pairs: int = 1_000_000,
               knn_k: int = 10, semantic_sample: int = 100_000) -> dict:
    """Audit report of a SID table with the keys of DESIGN.md §4.

    Parameters
    ----------
    codes : (n, L) int array of core SIDs (no suffix column).
    codebook_sizes : list of ints (or one int); None takes ``max code + 1`` per level.
    item_ids : (n,) ids; name the members of ``top_buckets`` and join ``interactions``/``baseline``.
    embeddings : (n, d) float array, row-aligned with ``codes``; adds the ``semantic`` block.
    leaf : (n,) leaf category per item (None for unknown), used by the conflict/benign rules.
    attributes : {name: per-item values (str, list of str, or None)} for prefix purity.
    titles : (n,) titles (worst-conflict listing, duplicate-title rule).
    interactions : {"user_id": ..., "item_id": ..., optional "position"/"timestamp"}: adds
        ``collaborative``.
    baseline : {"item_ids": ..., "codes": ..., optional "codebook_sizes"} (or a tuple
        ``(item_ids, codes)``): adds ``compare``.
    seed : seeds every sampled estimate.
    semantic_sample : above :data:`~sidkit.metrics.semantic.EXACT_MAX_ITEMS` items, the seeded
        query items of the semantic block (0: every item).

    Returns
    -------
    dict with ``n_items, n_levels, codebook_sizes, collision, levels, prefix, diversity, hamming``
    and ``top_buckets``; plus ``semantic``, ``collaborative`` and ``compare`` when their inputs
    are given.
    """
    codes, sizes = check_codes(codes, codebook_sizes)
    rep = core_report(codes, sizes, item_ids=item_ids, seed=seed, n_pairs=n_pairs, _checked=True)
    return sid_report_blocks(rep, codes, sizes, item_ids=item_ids, embeddings=embeddings, leaf=leaf, attributes=attributes,
                             titles=titles, interactions=interactions, baseline=baseline, seed=seed, knn_k=knn_k,
                             semantic_sample=semantic_sample)


def sid_report_blocks(rep: dict, codes, sizes, *, item_ids=None, embeddings=None, leaf=None, attributes=None,
                      titles=None, interactions=None, baseline=None, seed: int = 0, knn_k: int = 10,
                      semantic_sample: int = 100_000) -> dict:
    """Add the ``semantic``, ``collaborative`` and ``compare`` blocks to a core report ``rep``
    (from :func:`core_report` or :func:`sidkit.metrics.stream.core_report_stream`); ``codes``
    may be None when no block needs them."""
    if embeddings is not None:
        rep["semantic"] = semantic_metrics(codes, embeddings, leaf=leaf, attributes=attributes, titles=titles,
                                           item_ids=item_ids, seed=seed, k=knn_k, sample=semantic_sample)
    if interactions is not None:
        if item_ids is None:
            from sidkit.errors import DataError

            raise DataError("interactions need item_ids to join them to the codes")
        rep["collaborative"] = collaborative_metrics(codes, item_ids, interactions, seed=seed)
    if baseline is not None:
        if item_ids is None:
            from sidkit.errors import DataError

            raise DataError("baseline comparison needs item_ids to join the two tables")
        rep["compare"] = compare_metrics(codes, item_ids, baseline, report=rep, seed=seed)
    return rep


def semantic_metrics(*args, **kwargs):
    from sidkit.metrics.semantic import semantic_metrics as f

    return f(*args, **kwargs)


def collaborative_metrics(*args, **kwargs):
    from sidkit.metrics.collaborative import collaborative_metrics as f

    return f(*args, **kwargs)


def compare_metrics(*args, **kwargs):
    from sidkit.metrics.compare import compare_metrics as f

    return f(*args, **kwargs)
