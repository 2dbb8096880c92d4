"""Downstream evaluation of SID tables (METHODS.md §6.2): ``evaluate`` and the metric functions.

torch loads only when :func:`evaluate` runs.
"""

from __future__ import annotations

from sidkit.eval.bootstrap import paired_bootstrap
from sidkit.eval.metrics import ndcg_at_k, recall_at_k
from sidkit.eval.run import evaluate

__all__ = ["evaluate", "recall_at_k", "ndcg_at_k", "paired_bootstrap"]
