"""Check a built book for external scripts or stylesheets: ``python -m tests.check_html _build/html``.

The book must work offline, so no page may load a script or a stylesheet from http(s).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

EXTERNAL = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+["'][^>]*>""", re.I)


def external_references(html: str) -> list[str]:
    """The <script src=...> and <link href=...> tags of ``html`` that point to another host."""
    return EXTERNAL.findall(html)


def main(root: str) -> int:
    pages = sorted(Path(root).rglob("*.html"))
    if not pages:
        print(f"check_html: no HTML pages under {root}", file=sys.stderr)
        return 1
    bad = [(p, ref) for p in pages for ref in external_references(p.read_text(encoding="utf-8"))]
    for p, ref in bad:
        print(f"{p}: external reference {ref}", file=sys.stderr)
    print(f"check_html: {len(pages)} pages, {len(bad)} external script/stylesheet references")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "_build/html"))
