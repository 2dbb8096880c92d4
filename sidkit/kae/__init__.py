"""KAE, keyword-aligned encoding (METHODS.md §5): attribute codebooks with reserved slots that
can be bound to new words without retraining.

* :func:`make_plan` / :func:`read_plan` / :func:`write_plan`: grouping of attribute categories (§5.3-5.4)
* :class:`KAE`: the estimator (deterministic attribute encoding §5.5, content routing, residual levels)
* :func:`bind_slot`, :func:`unbind_slot`, :func:`list_slots`: the slot registry of a model directory (§5.6)
* :mod:`sidkit.kae.defaults`: the plan's defaults and bind-slot's routing cap

The names load on first use, so ``sidkit.kae.defaults`` (read by the CLI's help texts) does not
load pyarrow or the estimator.
"""

import importlib

_LAZY = {"Plan": "plan", "make_plan": "plan", "normalize_word": "plan", "read_plan": "plan", "write_plan": "plan",
         "KAE": "model", "NoReservedSlot": "slots", "bind_slot": "slots", "list_slots": "slots", "unbind_slot": "slots"}

__all__ = ["KAE", "NoReservedSlot", "Plan", "bind_slot", "list_slots", "make_plan", "normalize_word", "read_plan",
           "unbind_slot", "write_plan"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"sidkit.kae.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sidkit.kae' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
