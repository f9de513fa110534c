"""The browser check can fail: on two small pages, one that a reader sees as intended and one with raw
TeX, a remote image and a printout wider than the page, ``tests/browser_check.py`` passes the first and
reports each fault of the second. Skipped where Debian's Chromium is not installed (``make test`` needs
no browser; ``make test-browser`` and CI have one).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from tests import browser_check

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _mathjax() -> Path:
    import mathjax  # the pinned django-static-mathjax wheel

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body><article>{body}</article></body></html>"


def test_browser_check_passes_a_good_page_and_reports_a_bad_one(tmp_path):
    site = tmp_path / "html"
    shutil.copytree(_mathjax(), site / "_static" / "mathjax")
    (site / "dot.png").write_bytes(PNG)
    script = "<script defer src='_static/mathjax/tex-mml-chtml.js'></script>"
    (site / "good.html").write_text(_page(
        "<p>Inline <span class='math notranslate nohighlight'>\\(x^2 + y^2\\)</span> and an image "
        "<img src='dot.png' alt='dot'>.</p>", script))
    (site / "bad.html").write_text(_page(
        "<p>Raw <span class='math notranslate nohighlight'>\\(x^2\\)</span>, a remote image "
        "<img src='https://example.invalid/a.png' alt='remote'>, and a printout:</p>"
        "<pre style='overflow-x:auto'>" + "0.123456 " * 400 + "</pre>"))
    reports = {r["page"]: r for r in browser_check.check_pages(site, tmp_path / "shots", 600, CHROMIUM, isolate=False)}
    assert browser_check.problems(reports["good.html"]) == []
    assert reports["good.html"]["maths"] == 1 and (tmp_path / "shots" / "good.png").stat().st_size > 0
    found = " | ".join(browser_check.problems(reports["bad.html"]))
    for fault in ("not rendered", "raw TeX delimiters", "images did not load", "leave the machine", "horizontal overflow"):
        assert fault in found, f"{fault!r} not reported: {found}"
