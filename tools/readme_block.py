"""Replace a marked block of README.md (shared by the tools that write generated tables there)."""
from __future__ import annotations

import re
from pathlib import Path


def replace_block(readme: Path, start: str, end: str, text: str) -> bool:
    """Put ``text`` between the markers ``start`` and ``end`` of ``readme``; False (file untouched)
    when the file or either marker is missing, or the markers are out of order."""
    if not readme.is_file():
        return False
    content = readme.read_text()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        return False
    readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content, count=1))
    return True
