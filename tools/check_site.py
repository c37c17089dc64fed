#!/usr/bin/env python3
"""Check the documentation site the way a reader sees it, in headless Chromium.

``mkdocs build --strict`` only checks the Markdown: a site whose theme files
are missing builds without a warning and is unusable in a browser. This script
builds the site (``mkdocs build --strict``, into a temporary directory) or
takes one built already (``--site-dir``), serves it with ``http.server`` on
127.0.0.1, and opens every page of it (every ``.html`` file) in headless
Chromium driven by Selenium. On every page:

* the site's own stylesheets and scripts load (no error in the server's log,
  every stylesheet has rules), the theme's stylesheet is applied (its header
  is sticky) and the theme's JavaScript has run;
* no icon outside the page's text is drawn large (every ``svg`` and ``img``
  of the header, the navigation and the footer fits in 64 x 64 pixels: the
  unstyled page draws them the width of the window);
* every image has loaded (``naturalWidth > 0``);
* every Mermaid diagram is drawn as an SVG (none is left as code);
* no script throws an error (the browser's log);
* every link, stylesheet, script and image of the site's own origin answers
  HTTP 200, and a link's ``#fragment`` names an element of the page it points to.

Search: on the main pages and a page two levels down, typing "stride" into
the search box lists results. The site holds nothing of the repository but
``docs/`` and the README.

Other hosts (web fonts, badges, the Mermaid CDN) are used as a reader's browser
would use them; those this machine cannot resolve fail at once, and an image
from one of them is listed as NOT CHECKED. Problems that this check found and
whose fix lies elsewhere are listed in KNOWN_PROBLEMS: they are printed on
every run and do not fail it.

Screenshots (PNG) of the main pages (README, home, user guide, API overview),
of each Mermaid diagram and of any page with a problem go to ``--screenshots``
(default: a new temporary directory, printed at the end).

Mermaid: the theme loads the Mermaid engine from a CDN when a page has a
diagram. Where the CDN cannot be reached (a machine that reaches package
registries only), ``--mermaid-js FILE`` (or ``$PAPY_MERMAID_JS``), a local
``mermaid.min.js`` of the major version the theme asks for, stands in for it.
Without either, a diagram is checked up to the theme's request for the engine
and the run says NOT CHECKED for its drawing.

Needs Chromium and its driver (Debian: ``apt-get install chromium
chromium-driver``) and Selenium (``pip install ".[docs]"``).

Exit status: 0 when everything works; 1 with the list of problems; 2 when the
check cannot run (no browser, driver or Selenium, or no site to check).

Usage: python tools/check_site.py [--site-dir DIR] [--screenshots DIR] [--mermaid-js FILE]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# what of the repository the site may hold (mkdocs.yml's exclude_docs), and the
# LICENSE the README links to, should it be published one day
PUBLISHED = {"docs", "README.md", "LICENSE"}
# site path -> screenshot name
MAIN_PAGES = {
    "index.html": "readme",
    "docs/index.html": "home",
    "docs/user-guide/index.html": "user-guide",
    "docs/api/index.html": "api-overview",
}
# search is tried on these (the main pages and one two levels down)
SEARCH_PAGES = [*MAIN_PAGES, "docs/reference/imap/index.html"]
SEARCH_WORD = "stride"
# Problems found by this check whose fix is elsewhere: (page, words of the
# problem) -> why. They are listed on every run but do not fail it; an entry that
# no longer matches is listed too, to be deleted.
#: API signatures (mkdocstrings) that do not fit their box: the names of their objects
_WIDE_SIGNATURES = """
return [...document.querySelectorAll('.doc-signature code')]
  .filter((code) => code.scrollWidth > code.clientWidth + 1)
  .map((code) => {
    const heading = code.closest('.doc-signature')?.previousElementSibling;
    return (heading && heading.id) || code.textContent.slice(0, 40);
  });
"""
KNOWN_PROBLEMS: dict[tuple[str, tuple[str, ...]], str] = {}
ICON_MAX = 64  # pixels
WIDTH, HEIGHT = 1280, 900
WAIT = 15.0  # seconds, for search results and diagrams
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
)
_CDN_MERMAID = re.compile(r"https://[^\"'`\s]+/mermaid(?:@[\w.\-]+)?/dist/mermaid(?:\.min)?\.js")

# What a page says about itself, read once it has loaded.
_PROBE = """
const maxIcon = arguments[0];
const origin = location.origin;
const own = (url) => { try { return new URL(url, location.href).origin === origin; }
                       catch (e) { return false; } };
const header = document.querySelector('.md-header');
const sheets = [...document.querySelectorAll('link[rel~="stylesheet"]')]
  .filter((l) => own(l.href))
  .map((l) => { let rules = -1; try { rules = l.sheet ? l.sheet.cssRules.length : -1; }
                catch (e) { rules = -2; } return [l.href, rules]; });
const bigIcons = [];
for (const el of document.querySelectorAll('svg, img')) {
  // the page's text, an svg's inner svg, Mermaid's drawings (also while it draws)
  if (el.closest('.md-content, .mermaid, [id^="d__mermaid"]') || el.parentElement.closest('svg'))
    continue;
  const r = el.getBoundingClientRect();
  if (r.width > maxIcon || r.height > maxIcon) {
    const where = el.closest('[class]');
    bigIcons.push(`${el.tagName.toLowerCase()} in .${where ? where.classList[0] : '?'}`
                  + ` drawn ${Math.round(r.width)}x${Math.round(r.height)} px`);
  }
}
return {
  styleSheets: document.styleSheets.length,
  sheets: sheets,
  headerPosition: header ? getComputedStyle(header).position : null,
  themeScript: typeof window.document$ !== 'undefined',
  bigIcons: bigIcons,
  brokenImages: [...document.images].filter((i) => !(i.complete && i.naturalWidth > 0))
    .map((i) => i.currentSrc || i.src),
  links: [...document.querySelectorAll('a[href]')].map((a) => a.href).filter(own),
  resources: [
    ...[...document.querySelectorAll('link[href]')]
      .filter((l) => /\\b(stylesheet|icon|prev|next)\\b/.test(l.rel)).map((l) => l.href),
    ...[...document.querySelectorAll('script[src]')].map((s) => s.src),
    ...[...document.images].map((i) => i.src),
  ].filter(own),
};
"""


# Before a page's own scripts: note every script added to it (the theme adds the
# Mermaid engine's, and removes it again when it fails to load).
_WATCH_SCRIPTS = """
window.__scriptsAdded = [];
new MutationObserver((changes) => {
  for (const change of changes)
    for (const node of change.addedNodes)
      if (node.tagName === 'SCRIPT' && node.src) window.__scriptsAdded.push(node.src);
}).observe(document, {childList: true, subtree: true});
"""


@dataclass
class Request:
    path: str
    status: int
    referer: str


@dataclass
class Report:
    # what -> where (pages), in the order found
    problems: dict[str, list[str]] = field(default_factory=dict)
    known: dict[tuple[str, tuple[str, ...]], list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)

    def problem(self, where: str, what: str) -> None:
        for page, words in KNOWN_PROBLEMS:
            if page == where and any(word in what for word in words):
                found = self.known.setdefault((page, words), [])
                if what not in found:
                    found.append(what)
                return
        pages = self.problems.setdefault(what, [])
        if where not in pages:
            pages.append(where)

    def known_lines(self) -> list[str]:
        lines = []
        for (page, words), why in KNOWN_PROBLEMS.items():
            found = self.known.get((page, words), [])
            for what in found:
                lines.append(f"KNOWN PROBLEM (does not fail the check): {page}: {what}")
            if found:
                lines.append(f"    {why}")
            else:
                lines.append(
                    f"KNOWN PROBLEM NOT SEEN: {page}: {' / '.join(words)} (fixed, or not "
                    "checked on this run; once fixed, delete its entry in KNOWN_PROBLEMS)"
                )
        return lines

    def count(self) -> int:
        return sum(len(pages) for pages in self.problems.values())

    def lines(self) -> list[str]:
        lines = []
        for what, pages in self.problems.items():
            shown = ", ".join(pages[:4]) + (f" and {len(pages) - 4} more" if len(pages) > 4 else "")
            lines.append(f"  - {what}\n      on {shown}")
        return lines


class SiteServer:
    """The site on 127.0.0.1 (a free port), in a thread; every request is logged."""

    def __init__(self, site_dir: Path) -> None:
        self.requests: list[Request] = []
        lock = threading.Lock()
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                status = int(code) if isinstance(code, int) else 0
                with lock:
                    requests.append(Request(self.path, status, self.headers.get("Referer", "")))

        handler = functools.partial(Handler, directory=str(site_dir))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_requirements(build: bool = True) -> list[str]:
    """What this machine lacks to run the check (empty: nothing)."""
    missing = []
    if find_chromium() is None:
        missing.append("Chromium (apt-get install chromium)")
    if shutil.which("chromedriver") is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    if importlib.util.find_spec("selenium") is None:
        missing.append('Selenium (pip install ".[docs]")')
    if build and importlib.util.find_spec("mkdocs") is None:
        missing.append('MkDocs (pip install ".[docs]")')
    return missing


def build_site(site_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)


def start_browser(chromium: str, unreachable: set[str]) -> Any:
    """Headless Chromium; the hosts in ``unreachable`` fail at once (not after retries)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if unreachable:
        rules = ", ".join(f"MAP {host} ~NOTFOUND" for host in sorted(unreachable))
        options.add_argument(f"--host-resolver-rules={rules}")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


@dataclass
class Page:
    rel: str  # the file in the site: docs/api/index.html
    url: str  # the URL a reader opens: http://127.0.0.1:PORT/docs/api/
    where: str  # the same without the server: /docs/api/
    diagrams: int  # Mermaid diagrams in the built page (<pre class="mermaid">)
    source: str | None  # the Markdown file of the page, if it is in the repository
    source_diagrams: int  # ```mermaid blocks in that file


def page_url(base: str, rel: str) -> str:
    """The URL a reader uses for the page in file ``rel`` (``a/index.html`` -> ``a/``)."""
    if rel == "index.html" or rel.endswith("/index.html"):
        rel = rel[: -len("index.html")]
    return base + urllib.parse.quote(rel)


def source_of(rel: str) -> Path | None:
    """The Markdown file that mkdocs made page ``rel`` of (use_directory_urls)."""
    if not rel.endswith("index.html"):
        return None
    folder = rel[: -len("index.html")].rstrip("/")
    candidates = [f"{folder}/index.md", f"{folder}/README.md", f"{folder}.md"] if folder else []
    candidates = candidates or ["index.md", "README.md"]
    for candidate in candidates:
        path = ROOT / candidate.lstrip("/")
        if path.is_file():
            return path
    return None


_MERMAID_FENCE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*\{?[ \t]*\.?mermaid\b", re.M)
_MERMAID_PRE = re.compile(r"<pre\b[^>]*\bclass=\"(?:[^\"]*\s)?mermaid(?:\s[^\"]*)?\"")


def find_pages(site_dir: Path, base: str) -> list[Page]:
    pages = []
    for path in sorted(site_dir.rglob("*.html")):
        rel = path.relative_to(site_dir).as_posix()
        url = page_url(base, rel)
        source = source_of(rel)
        text = path.read_text(encoding="utf-8", errors="replace")
        pages.append(
            Page(
                rel=rel,
                url=url,
                where="/" + page_url("", rel),
                diagrams=len(_MERMAID_PRE.findall(text)),
                source=source.relative_to(ROOT).as_posix() if source else None,
                source_diagrams=(
                    len(_MERMAID_FENCE.findall(source.read_text(encoding="utf-8"))) if source else 0
                ),
            )
        )
    return pages


def slug(rel: str) -> str:
    name = rel[: -len("index.html")] if rel.endswith("index.html") else rel
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "root"


def load(driver: Any, url: str) -> None:
    driver.get(url)
    deadline = time.monotonic() + WAIT
    while driver.execute_script("return document.readyState") != "complete":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def wait_for(driver: Any, script: str, timeout: float = WAIT) -> Any:
    """Evaluate ``script`` until it returns something true, or the timeout; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def drawn_diagrams(driver: Any) -> tuple[int, int]:
    """(diagrams drawn as an SVG, diagrams drawn as Mermaid's error picture).

    The theme draws a diagram into a closed shadow root, which the page's own
    scripts cannot see; the DevTools protocol can."""
    tree = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1, "pierce": True})
    drawn = errors = 0

    def attrs(node: dict[str, Any]) -> dict[str, str]:
        flat = node.get("attributes", [])
        return dict(zip(flat[::2], flat[1::2]))

    def first_svg(node: dict[str, Any]) -> dict[str, Any] | None:
        if node.get("nodeName", "").lower() == "svg":
            return node
        for child in node.get("children", []) + node.get("shadowRoots", []):
            found = first_svg(child)
            if found is not None:
                return found
        return None

    def walk(node: dict[str, Any]) -> None:
        nonlocal drawn, errors
        if node.get("nodeName") == "DIV" and "mermaid" in attrs(node).get("class", "").split():
            for root in node.get("shadowRoots", []):
                svg = first_svg(root)
                if svg is None:
                    continue
                if attrs(svg).get("aria-roledescription") == "error":
                    errors += 1
                else:
                    drawn += 1
                break
        for child in node.get("children", []) + node.get("shadowRoots", []):
            walk(child)

    walk(tree["root"])
    return drawn, errors


class UrlChecker:
    """HTTP status and element ids of the site's own URLs, each fetched once."""

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._ids: dict[str, set[str]] = {}

    def _fetch(self, url: str) -> None:
        kind = ""
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                status, body = response.status, response.read()
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            status, body = error.code, b""
        except OSError:
            status, body = 0, b""
        self._status[url] = status
        ids: set[str] = set()
        if kind == "text/html":
            text = body.decode("utf-8", "replace")
            ids = set(re.findall(r"""\s(?:id|name)\s*=\s*["']([^"']+)["']""", text))
        self._ids[url] = ids

    def status(self, url: str) -> int:
        if url not in self._status:
            self._fetch(url)
        return self._status[url]

    def has_fragment(self, url: str, fragment: str) -> bool:
        self.status(url)
        return urllib.parse.unquote(fragment) in self._ids[url]


def screenshot(driver: Any, path: Path, report: Report) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if driver.save_screenshot(str(path)):
        report.screenshots.append(path)


def cdn_mermaid_url(site_dir: Path) -> str | None:
    """The URL from which the theme's JavaScript loads the Mermaid engine."""
    for script in sorted(site_dir.glob("assets/javascripts/*.js")):
        found = _CDN_MERMAID.search(script.read_text(encoding="utf-8", errors="replace"))
        if found:
            return found.group(0)
    return None


_EXTERNAL = re.compile(r"""<(?:link|script|img)\b[^>]*\s(?:href|src)=["']https?://([^/"':]+)""")


def unresolvable_hosts(site_dir: Path, also: list[str]) -> set[str]:
    """The other hosts the pages load from that this machine cannot resolve.

    The browser would fail on them too, only after retrying for seconds on
    every page: the check maps them to "not found" at once."""
    hosts = set(also)
    for path in site_dir.rglob("*.html"):
        hosts.update(_EXTERNAL.findall(path.read_text(encoding="utf-8", errors="replace")))
    unresolvable = set()
    for host in hosts:
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            unresolvable.add(host)
    return unresolvable


def reachable(url: str) -> bool:
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


class SiteCheck:
    """Every page of one served site, in one browser."""

    def __init__(
        self,
        server: SiteServer,
        driver: Any,
        report: Report,
        shots: Path,
        mermaid_js: str | None,
        engine: str | None,
        unreachable: set[str],
    ) -> None:
        self.server = server
        self.driver = driver
        self.report = report
        self.shots = shots
        self.mermaid_js = mermaid_js
        self.engine = engine  # "local", "cdn" or None: no engine, diagrams not drawn
        self.unreachable = unreachable
        self.urls = UrlChecker()
        self.links: dict[str, list[str]] = {}  # link -> pages with it
        self.logged = 0  # server.requests[:logged] are checked
        self.search_failed = False

    def path(self, url: str) -> str:
        """A URL of the site as a path (/assets/...)."""
        return "/" + url[len(self.server.base) :] if url.startswith(self.server.base) else url

    def page(self, page: Page) -> int:
        """Check one page; the number of problems found on it."""
        report, driver = self.report, self.driver
        before = report.count()
        injected = None
        if page.diagrams and self.engine == "local":
            # the theme uses a `mermaid` that is defined already instead of the CDN copy
            injected = driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument", {"source": self.mermaid_js}
            )["identifier"]
        elif page.diagrams and self.engine is None:
            injected = driver.execute_cdp_cmd(
                "Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH_SCRIPTS}
            )["identifier"]
        try:
            load(driver, page.url)
            info = driver.execute_script(_PROBE, ICON_MAX)
            drawn = errors = undrawn = 0
            requested: list[str] = []
            if page.diagrams and self.engine is not None and info["themeScript"]:
                # until every diagram is drawn, or Mermaid has drawn its error picture
                wait_for(
                    driver,
                    "return document.querySelectorAll('pre.mermaid').length === 0"
                    " || document.querySelector('svg[aria-roledescription=\"error\"]')",
                )
                drawn, errors = drawn_diagrams(driver)
                undrawn = driver.execute_script(
                    "return document.querySelectorAll('pre.mermaid').length"
                )
            elif page.diagrams and info["themeScript"]:
                requested = wait_for(
                    driver,
                    "return window.__scriptsAdded.filter((src) => /mermaid/.test(src))",
                    timeout=5,
                )
        finally:
            if injected is not None:
                driver.execute_cdp_cmd(
                    "Page.removeScriptToEvaluateOnNewDocument", {"identifier": injected}
                )

        where = page.where
        if info["styleSheets"] == 0:
            report.problem(where, "no stylesheet at all (document.styleSheets is empty)")
        for href, rules in info["sheets"]:
            if rules <= 0:
                report.problem(where, f"the stylesheet {self.path(href)} did not load")
        if info["headerPosition"] != "sticky":
            report.problem(
                where,
                "the theme's stylesheet is not applied (the header's position is "
                f"{info['headerPosition']!r}, not 'sticky')",
            )
        if not info["themeScript"]:
            report.problem(where, "the theme's JavaScript did not run (no window.document$)")
        for icon in info["bigIcons"]:
            report.problem(where, f"an unstyled icon: {icon} (at most {ICON_MAX} px expected)")
        for src in info["brokenImages"]:
            host = urllib.parse.urlsplit(src).hostname
            if host in self.unreachable:
                note = f"NOT CHECKED: the image {src}: this machine cannot reach {host}"
                if note not in report.notes:
                    report.notes.append(note)
            else:
                report.problem(where, f"the image {self.path(src)} did not load")

        if page.source_diagrams > page.diagrams:
            report.problem(
                where,
                f"{page.source_diagrams - page.diagrams} Mermaid diagram(s) of {page.source} "
                "shown as code, not drawn (mkdocs.yml: no 'mermaid' custom fence in "
                "pymdownx.superfences)",
            )
        if page.diagrams and info["themeScript"]:
            if self.engine is not None:
                if errors:
                    report.problem(where, f"{errors} Mermaid diagram(s) drawn as a syntax error")
                if drawn + errors < page.diagrams:
                    report.problem(
                        where,
                        f"{page.diagrams - drawn - errors} of {page.diagrams} Mermaid "
                        f"diagram(s) not drawn as an SVG ({undrawn} left as code)",
                    )
            elif not requested:
                report.problem(where, "the theme did not ask for the Mermaid engine")
            else:
                self.report.notes.append(
                    f"NOT CHECKED: {where}: the drawing of {page.diagrams} Mermaid "
                    f"diagram(s): the theme loads the engine from {requested[0]}, which this "
                    "machine cannot reach; give --mermaid-js FILE (a local mermaid.min.js)"
                )

        for name in driver.execute_script(_WIDE_SIGNATURES):
            report.problem(
                where,
                f"the signature of {name} is wider than the page (it scrolls sideways: "
                "are its parameters formatted one per line? the docs extra installs ruff)",
            )
        self.script_errors(where)
        for resource in info["resources"]:
            status = self.urls.status(resource.split("#")[0])
            if status != 200:
                report.problem(where, f"{self.path(resource)} answers HTTP {status}")
        self.server_log(where)
        for link in info["links"]:
            pages = self.links.setdefault(link, [])
            if where not in pages:
                pages.append(where)

        failed = report.count() - before
        if page.rel in MAIN_PAGES:
            screenshot(driver, self.shots / f"{MAIN_PAGES[page.rel]}.png", report)
        if drawn:
            driver.execute_script(
                "const d = document.querySelector('div.mermaid');"
                "if (d) d.scrollIntoView({block: 'center'});"
            )
            time.sleep(0.2)
            screenshot(driver, self.shots / f"{slug(page.rel)}-diagram.png", report)
        if failed:
            screenshot(driver, self.shots / f"problem-{slug(page.rel)}.png", report)
        return failed

    def script_errors(self, where: str) -> None:
        """Errors thrown by the page's scripts since the last look (the browser's log)."""
        for entry in self.driver.get_log("browser"):
            if entry.get("source") == "javascript" and entry.get("level") == "SEVERE":
                message = " ".join(entry["message"].replace(self.server.base, "/").split())
                if any(f"//{host}/" in message for host in self.unreachable):
                    continue  # a script of a host this machine cannot reach (NOT CHECKED)
                self.report.problem(where, f"a script failed: {message[:300]}")

    def server_log(self, where: str | None = None) -> None:
        """Requests the server answered with an error since the last look.

        ``where``: the page being checked; without it, the page that asked."""
        requests = self.server.requests[self.logged :]
        self.logged += len(requests)
        for request in requests:
            if request.status >= 400:
                asked_by = where or self.path(request.referer) or "a page"
                self.report.problem(asked_by, f"{request.path} answers HTTP {request.status}")

    def search(self, page: Page) -> None:
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By

        driver = self.driver
        load(driver, page.url)
        if not driver.execute_script("return typeof window.document$ !== 'undefined'"):
            self.report.problem(
                page.where, "search cannot work: the theme's JavaScript did not run"
            )
            return
        try:
            box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
            box.click()
            box.send_keys(SEARCH_WORD)
        except WebDriverException as error:
            self.report.problem(page.where, f"cannot type into the search box: {error.msg}")
            return
        # once search has failed on a page, it will on the others: no long wait
        timeout = 3 if self.search_failed else WAIT
        found = wait_for(
            driver,
            "return document.querySelectorAll('.md-search-result__item').length",
            timeout=timeout,
        )
        if not found:
            self.search_failed = True
            meta = driver.execute_script(
                "const m = document.querySelector('.md-search-result__meta');"
                "return m ? m.textContent.trim() : null"
            )
            self.report.problem(
                page.where,
                f"searching for {SEARCH_WORD!r} lists no result within {timeout:.0f} s "
                f"(the search box says {meta!r})",
            )
        self.script_errors(page.where)
        self.server_log(page.where)

    def check_links(self) -> None:
        for link, pages in sorted(self.links.items()):
            target, _, fragment = link.partition("#")
            status = self.urls.status(target)
            for where in pages:
                if status != 200:
                    self.report.problem(where, f"the link {self.path(link)} answers HTTP {status}")
                elif fragment and not self.urls.has_fragment(target, fragment):
                    self.report.problem(
                        where, f"the link {self.path(link)} names no element of its page"
                    )


def check_published(site_dir: Path, report: Report) -> None:
    """The site holds nothing of the repository but docs/, the README and the LICENSE."""
    for entry in sorted(site_dir.iterdir()):
        if (ROOT / entry.name).exists() and entry.name not in PUBLISHED:
            report.problem(f"/{entry.name}", "a file of the repository is published")


def check_site(
    site_dir: Path, shots: Path, mermaid_js: str | None, chromium: str, report: Report
) -> int:
    """Check every page of the site; the number of pages."""
    check_published(site_dir, report)
    engine = "local" if mermaid_js is not None else None
    with SiteServer(site_dir) as server:
        pages = find_pages(site_dir, server.base)
        if not pages:
            report.problem(str(site_dir), "no page (.html file) in the site")
            return 0
        cdn = cdn_mermaid_url(site_dir)
        if engine is None and any(page.diagrams for page in pages):
            engine = "cdn" if cdn is not None and reachable(cdn) else None
        cdn_host = [urllib.parse.urlsplit(cdn).hostname or ""] if cdn else []
        unreachable = unresolvable_hosts(site_dir, cdn_host)
        driver = start_browser(chromium, unreachable)
        try:
            check = SiteCheck(server, driver, report, shots, mermaid_js, engine, unreachable)
            for page in pages:
                started = time.monotonic()
                failed = check.page(page)
                status = f"{failed} problem(s)" if failed else "ok"
                seconds = time.monotonic() - started
                print(f"  {status:>13}  {page.where}  ({seconds:.1f} s)", flush=True)
            by_rel = {page.rel: page for page in pages}
            for rel in SEARCH_PAGES:
                if rel in by_rel:
                    check.search(by_rel[rel])
                else:
                    report.problem("/" + page_url("", rel), "the page does not exist")
            print(f"  search for {SEARCH_WORD!r}: tried on {len(SEARCH_PAGES)} pages", flush=True)
        finally:
            driver.quit()
        check.server_log()
        check.check_links()
        print(f"  links: {len(check.links)} distinct links to the site itself", flush=True)
    return len(pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check the documentation site in headless Chromium (see the module's doc)."
    )
    parser.add_argument(
        "--site-dir",
        type=Path,
        help="a site built already (default: build it with mkdocs build --strict)",
    )
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="where to save the screenshots (default: a new temporary directory)",
    )
    parser.add_argument(
        "--mermaid-js",
        type=Path,
        default=os.environ.get("PAPY_MERMAID_JS") or None,
        help="a local mermaid.min.js to stand in for the CDN copy the theme loads "
        "(default: $PAPY_MERMAID_JS)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    missing = missing_requirements(build=args.site_dir is None)
    if missing:
        print("cannot check the site: this machine lacks " + ", ".join(missing), file=sys.stderr)
        return 2
    chromium = find_chromium()
    assert chromium is not None
    mermaid_js = None
    if args.mermaid_js is not None:
        try:
            mermaid_js = args.mermaid_js.read_text(encoding="utf-8")
        except OSError as error:
            print(f"cannot read --mermaid-js: {error}", file=sys.stderr)
            return 2
    shots = args.screenshots or Path(tempfile.mkdtemp(prefix="papy-site-screenshots-"))
    shots.mkdir(parents=True, exist_ok=True)

    report = Report()
    with tempfile.TemporaryDirectory(prefix="papy-site-") as scratch:
        if args.site_dir is None:
            site_dir = Path(scratch) / "site"
            print(f"building the site: mkdocs build --strict --site-dir {site_dir}", flush=True)
            built = build_site(site_dir)
            if built.returncode != 0:
                print(built.stdout + built.stderr, file=sys.stderr)
                print("FAILED: mkdocs build --strict", file=sys.stderr)
                return 1
        else:
            site_dir = args.site_dir.resolve()
            if not site_dir.is_dir():
                print(f"cannot check the site: no directory {site_dir}", file=sys.stderr)
                return 2
        print(f"checking {site_dir} in {chromium}", flush=True)
        pages = check_site(site_dir, shots, mermaid_js, chromium, report)

    elapsed = time.monotonic() - started
    for note in report.notes + report.known_lines():
        print(note)
    print(f"screenshots: {shots} ({len(report.screenshots)} PNG files)")
    if report.problems:
        print(
            f"FAILED: {len(report.problems)} kind(s) of problem, {report.count()} in all, "
            f"on the site ({pages} pages checked in {elapsed:.0f} s):"
        )
        print("\n".join(report.lines()))
        return 1
    print(f"OK: {pages} pages checked in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
