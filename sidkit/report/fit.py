"""The method-specific parts of a fit's summary, derived from ``report.json``'s blocks.

Tokenizers return data (``report_blocks(codes)``: e.g. the ``kae`` block with its groups and the
bindings a refit carried over); the entries of the fit summary and its notes and warnings are made
from that data here, so no estimator holds summary or message text.
"""

from __future__ import annotations


def method_summary(report: dict) -> dict:
    """Method-specific entries of the fit summary (KAE: groups, residual levels, bindings)."""
    kae = report.get("kae")
    if kae is None:
        return {}
    c = kae["carried_bindings"]
    return {"kae": {"groups": [{k: g[k] for k in ("name", "categories", "kept_words", "reserved", "capacity")}
                               for g in kae["groups"]],
                    "residual_levels": kae["residual_levels"],
                    "bindings_kept": len(c["kept"]), "bindings_dropped": c["dropped"],
                    "bindings_now_active": len(c["active"])}}


def method_messages(report: dict) -> tuple[list[str], list[str]]:
    """(notes, warnings) of the fit summary from the method's report block (KAE: the slot bindings
    a refit kept, dropped, or that became kept words)."""
    kae = report.get("kae")
    if kae is None:
        return [], []
    c = kae["carried_bindings"]
    warnings = [f"refit: binding {d['category']}:{d['word']} could not be kept: {d['reason']}" for d in c["dropped"]]
    warnings += [f"refit: binding {k['category']}:{k['word']} kept at slot {k['slot']}, but {k['note']}" for k in c["kept"] if k.get("note")]
    notes = []
    if c["kept"] or c["active"]:
        notes.append(f"refit: kept {len(c['kept'])} slot binding(s) of the previous model"
                     + (f"; {len(c['active'])} bound word(s) are now kept words with active slots" if c["active"] else ""))
    return notes, warnings
