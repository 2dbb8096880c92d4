"""Rendering of audit reports (HTML)."""

from __future__ import annotations

__all__ = ["render_html"]


def render_html(report: dict, path) -> None:
    from sidkit.report.html import render_html as f

    f(report, path)
