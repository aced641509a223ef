"""Number figures (and captioned tables and code blocks) per chapter: "Fig. 3.1", "Fig. 7b.2".

The chapters' titles carry their own numbers (1, 2, ..., 7b, 8b, ...), so the toctree is not
numbered (a numbered toctree would count 7b as 8); Sphinx then numbers figures across the whole
book (chapter 3 started at Fig. 9). After Sphinx has assigned those numbers (the
``env-get-updated`` event), this extension renumbers each document's figures from 1, in the order
Sphinx found them, prefixed with the chapter's label taken from its file name
(``book/07b_evaluation`` -> ``7b``); a page without a chapter number (the introduction) keeps
plain numbers from 1. Cross-references ({numref}) read the same numbers, so they follow.
"""
from __future__ import annotations

import re

CHAPTER = re.compile(r"(?:^|/)0*(\d+[a-z]?)_[^/]*$")


def chapter_label(docname: str) -> str | None:
    """'7b' for 'book/07b_evaluation', '10' for 'book/10_synthetic_anomalies', None for 'book/intro'."""
    match = CHAPTER.search(docname)
    return match.group(1) if match else None


def per_chapter(fignumbers: dict) -> dict:
    """{docname: {figtype: {id: number}}} renumbered from 1 per document and figure type, in the
    order of the numbers given (document order), with the chapter label in front where there is one."""
    out = {}
    for docname, types in fignumbers.items():
        label = chapter_label(docname)
        out[docname] = {}
        for figtype, numbers in types.items():
            ordered = sorted(numbers, key=lambda figure_id: tuple(numbers[figure_id]))
            out[docname][figtype] = {figure_id: ((label, i) if label else (i,))
                                     for i, figure_id in enumerate(ordered, 1)}
    return out


def renumber(app, env) -> list[str]:
    old = env.toc_fignumbers
    env.toc_fignumbers = per_chapter(old)
    return [docname for docname in env.toc_fignumbers if env.toc_fignumbers[docname]]


def setup(app):
    app.connect("env-get-updated", renumber, priority=900)   # after Sphinx's own numbering (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
