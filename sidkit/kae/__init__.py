"""KAE, keyword-aligned encoding (METHODS.md §5): attribute codebooks with reserved slots that
can be bound to new words without retraining.

* :func:`make_plan` / :func:`read_plan` / :func:`write_plan`: grouping of attribute categories (§5.3-5.4)
* :class:`KAE`: the estimator (deterministic attribute encoding §5.5, content routing, residual levels)
* :func:`bind_slot`, :func:`unbind_slot`, :func:`list_slots`: the slot registry of a model directory (§5.6)
"""

from sidkit.kae.plan import Plan, make_plan, normalize_word, read_plan, write_plan
from sidkit.kae.model import KAE
from sidkit.kae.slots import NoReservedSlot, bind_slot, list_slots, unbind_slot

__all__ = ["KAE", "NoReservedSlot", "Plan", "bind_slot", "list_slots", "make_plan", "normalize_word", "read_plan",
           "unbind_slot", "write_plan"]
