"""Open every page of the built book in headless Chromium, offline, and check what a reader sees.

``python -m tests.browser_check _build/html --screenshots _build/screenshots`` (``make test-browser``).

For every HTML page under the build (``_static/`` and ``_sources/`` excepted) it loads the page from a
``file://`` URL and checks that

- MathJax rendered: every ``.math`` element holds an ``mjx-container``, no TeX error (``mjx-merror``),
  and no raw TeX delimiter (``\\(``, ``\\[``, ``$$``) is left in the page's text outside code;
- every image loaded (``complete`` and a non-zero natural width);
- no request left the machine: every URL the page asked for is ``file:``, ``data:``, ``blob:`` or
  ``about:`` (the browser runs with its network emulated offline and, where ``unshare`` allows, in a
  network namespace of its own with no interface up);
- a chapter page links its notebook (the download button), and the link is a file of the build;
- nothing overflows horizontally: neither the page nor any element of the article is wider than the
  space it is shown in (a wide table or printout that scrolls or is cut off counts);

and saves a screenshot of the page (PNG, the top ``--height`` pixels at 1280 px wide).

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``): no
WebDriver, no websocket, no port, no package beyond the standard library. Debian's ``chromium`` package
provides the browser (``apt-get install chromium``). Exit status 1 if any page fails a check.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
    "--remote-debugging-pipe", "--window-size=1280,900",
]
REDIRECT = re.compile(r'^\s*<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")

# What the page reports about itself, once MathJax and the fonts are done.
PAGE_REPORT = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  if (document.fonts) { await document.fonts.ready; }
  const maths = Array.from(document.querySelectorAll('.math'));
  const unrendered = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 80));
  const texErrors = Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80));
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
  const text = clone.textContent;
  const delimiters = ['\\(', '\\)', '\\[', '\\]', '$$'].filter(d => text.includes(d));
  const images = Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const root = document.documentElement;
  const overflow = [];
  if (root.scrollWidth > root.clientWidth + 1) {
    overflow.push({what: 'page', scroll: root.scrollWidth, client: root.clientWidth});
  }
  const article = document.querySelector('article') || document.querySelector('main') || document.body;
  const width = article.getBoundingClientRect().right;
  for (const el of article.querySelectorAll('*')) {
    if (el.closest('mjx-assistive-mml')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    const r = el.getBoundingClientRect();
    // a block that scrolls or clips its content sideways (inline boxes have no scroll box of their own)
    const scrolls = !style.display.startsWith('inline') && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0
      && ['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX);
    const sticksOut = r.width > 0 && r.right > width + 1;
    if (scrolls || sticksOut) {
      // report the outermost offender only
      let p = el.parentElement, reported = false;
      while (p && p !== article) { if (p.dataset.lrtOverflow) { reported = true; break; } p = p.parentElement; }
      if (reported) continue;
      el.dataset.lrtOverflow = '1';
      const cell = el.closest('.cell, section');
      overflow.push({
        what: el.tagName.toLowerCase() + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).slice(0, 2).join('.') : ''),
        scroll: Math.round(scrolls ? el.scrollWidth : r.right), client: Math.round(scrolls ? el.clientWidth : width),
        near: cell ? (cell.id || (cell.querySelector('h1,h2,h3') || {}).textContent || '').trim().slice(0, 60) : '',
        text: el.textContent.trim().replace(/\s+/g, ' ').slice(0, 70),
      });
    }
  }
  const downloads = Array.from(document.querySelectorAll('a[href$=".ipynb"]')).map(a => a.href);
  return {title: document.title, maths: maths.length, unrendered, texErrors, delimiters, images, overflow, downloads};
})()
"""


class Browser:
    """Headless Chromium over ``--remote-debugging-pipe`` (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, executable: str, isolate: bool):
        self.profile = tempfile.mkdtemp(prefix="lrt-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        command = [executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        if isolate:
            command = ["unshare", "--net", "--", *command]
        # the shell puts the pipe ends on the descriptors Chromium expects, 3 and 4
        # (through two spare descriptors first: the pipe ends may themselves be 3 or 4)
        r, w = to_browser_r, from_browser_w
        wire = f'exec "$@" 100<&{r} 101>&{w} {r}<&- {w}>&- 3<&100 4>&101 100<&- 101>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", wire, "bash", *command], pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe (did it start?)")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def pages_of(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.html") if not {"_static", "_sources"} & set(p.relative_to(root).parts))


def check_pages(root: Path, screenshots: Path | None, height: int, executable: str, isolate: bool) -> list[dict]:
    browser = Browser(executable, isolate)
    reports = []
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Network.enable", "Runtime.enable"):
            browser.send(method, session=session)
        browser.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                          "uploadThroughput": -1}, session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
        for page in pages_of(root):
            redirect = REDIRECT.search(page.read_text(encoding="utf-8", errors="replace")[:500])
            if redirect:  # Jupyter Book's index.html: a meta refresh to the root page
                target = (page.parent / redirect.group(1)).resolve()
                reports.append({"page": page.relative_to(root).as_posix(), "redirect": redirect.group(1),
                                "error": None if target.exists() else f"redirects to a missing page {redirect.group(1)}"})
                continue
            browser.events.clear()
            url = page.resolve().as_uri()
            browser.send("Page.navigate", {"url": url}, session=session)
            browser.wait_for("Page.loadEventFired")
            value = browser.send("Runtime.evaluate", {"expression": PAGE_REPORT, "awaitPromise": True,
                                                      "returnByValue": True}, session=session, timeout=60)
            report = value["result"].get("value") or {"error": str(value)}
            requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
            report["page"] = page.relative_to(root).as_posix()
            report["requests"] = len(requests)
            report["remote"] = sorted({u for u in requests if not u.startswith(LOCAL_SCHEMES)})
            if screenshots is not None:
                shot = screenshots / (report["page"].replace("/", "__").removesuffix(".html") + ".png")
                shot.parent.mkdir(parents=True, exist_ok=True)
                data = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                    "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}},
                                    session=session)["data"]
                shot.write_bytes(base64.b64decode(data))
                report["screenshot"] = str(shot)
            reports.append(report)
    finally:
        browser.close()
    return reports


def problems(report: dict) -> list[str]:
    out = []
    if "redirect" in report:
        return [report["error"]] if report["error"] else []
    if "error" in report:
        return [f"could not inspect the page: {report['error']}"]
    if report["unrendered"]:
        out.append(f"{len(report['unrendered'])} of {report['maths']} math elements not rendered, e.g. {report['unrendered'][0]!r}")
    if report["texErrors"]:
        out.append(f"MathJax errors: {report['texErrors'][:3]}")
    if report["delimiters"]:
        out.append(f"raw TeX delimiters in the text: {report['delimiters']}")
    bad = [i["src"] for i in report["images"] if not i["ok"]]
    if bad:
        out.append(f"{len(bad)} of {len(report['images'])} images did not load: {bad[:3]}")
    if report["page"].startswith("book/part") and not report.get("downloads"):
        out.append("no download link for the chapter's notebook")
    for url in report.get("downloads", []):
        if not url.startswith("file:") or not Path(unquote(urlparse(url).path)).is_file():
            out.append(f"the notebook download {url} is not a file of the build")
    if report["remote"]:
        out.append(f"requests that would leave the machine: {report['remote'][:5]}")
    for o in report["overflow"]:
        out.append(f"horizontal overflow: {o['what']} {o['scroll']} px in {o['client']} px"
                   + (f" near {o['near']!r}" if o.get("near") else "") + (f": {o['text']!r}" if o.get("text") else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser_check", description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="_build/html", help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", default="_build/screenshots", help="folder for one PNG per page ('' for none)")
    parser.add_argument("--height", type=int, default=2400, help="screenshot height in pixels (default 2400)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--json", help="also write every page's report to this file")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not pages_of(root):
        print(f"browser_check: no HTML pages under {root}; run make book first", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"browser_check: no Chromium at {args.chromium}; install Debian's package: apt-get install chromium", file=sys.stderr)
        return 2
    # a network namespace of its own, with no interface up, when we may make one (root, or user namespaces)
    isolate = shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--net", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    start = time.monotonic()
    reports = check_pages(root, Path(args.screenshots) if args.screenshots else None, args.height, args.chromium, isolate)
    failed = 0
    for report in reports:
        found = problems(report)
        failed += bool(found)
        summary = (f"{report['page']}: redirect to {report['redirect']}" if "redirect" in report else
                   f"{report['page']}: {report.get('maths', 0)} math, {len(report.get('images', []))} images, "
                   f"{report.get('requests', 0)} requests, {len(report.get('overflow', []))} overflowing")
        print(("FAIL " if found else "ok   ") + summary)
        for p in found:
            print("     - " + p)
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1))
    network = "network namespace without interfaces + offline emulation" if isolate else "offline emulation"
    print(f"browser_check: {len(reports)} pages, {len(reports) - failed} passed, {failed} failed "
          f"({network}; {time.monotonic() - start:.0f} s; screenshots in {args.screenshots or 'none'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
