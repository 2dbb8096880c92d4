"""Downstream evaluation of SID tables (METHODS.md §6.2): ``evaluate`` and the metric functions.

torch loads only when :func:`evaluate` runs; the names here load on first use, so
:mod:`sidkit.eval.defaults` (read by the CLI's help texts) loads nothing else.
"""

from __future__ import annotations

import importlib

_LAZY = {"evaluate": "run", "recall_at_k": "metrics", "ndcg_at_k": "metrics", "paired_bootstrap": "bootstrap"}

__all__ = ["evaluate", "recall_at_k", "ndcg_at_k", "paired_bootstrap"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"sidkit.eval.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sidkit.eval' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
