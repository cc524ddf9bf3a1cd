"""Markdown written by agents, rendered as untrusted input.

markdown-it-py with raw HTML disabled (``<script>`` and ``<img onerror>`` come out as text)
and only ``http``, ``https`` and ``mailto`` links, or links without a scheme; anything else
(``javascript:``, ``data:``, ``vbscript:``) is left as plain text.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

__all__ = ["MAX_MARKDOWN", "render_markdown", "safe_link"]

MAX_MARKDOWN = 200_000
"""Longer texts are shown as plain text: markdown-it-py renders roughly 100-200 KB a
second, so a 2 MB artifact took over ten seconds of CPU per page view."""

_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*):")
_ALLOWED = frozenset({"http", "https", "mailto"})


def safe_link(url: str) -> bool:
    """True for links the dashboard may render: no scheme, or http/https/mailto."""
    # Browsers ignore ASCII control characters and whitespace inside a scheme
    # ("java\tscript:"): drop them before looking.
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", url)
    match = _SCHEME.match(cleaned)
    return match is None or match.group(1).lower() in _ALLOWED


_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_md.enable("table")
_md.validateLink = safe_link  # type: ignore[method-assign]


def render_markdown(text: str | None) -> str:
    """HTML for ``text`` (empty for None); safe to insert into a page."""
    if not text:
        return ""
    if len(text) > MAX_MARKDOWN:
        note = f"Shown as plain text: longer than {MAX_MARKDOWN:,} characters."
        return f'<p class="muted">{note}</p>\n<pre>{html.escape(text)}</pre>\n'
    rendered: str = _md.render(text)
    return rendered
