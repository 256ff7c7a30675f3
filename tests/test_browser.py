"""The built HTML book in a real browser: headless Chromium driven by Playwright.

Every page listed in _toc.yml is opened from disk (file://, as a reader opens
_build/html/index.html) and checked for: console errors from the book's own assets, figures
that render, internal links that resolve, a working Colab launch link on each chapter, readable
snapshots of widgets, hidden solutions that open, and a layout that fits the text column: no
code, output or table wider than the column, no figure scaled below the size at which its text
stays legible (`LEGIBLE_SCALE`). A full-page screenshot of every page is written to the
repository's build folder, `_build/screenshots/` (git-ignored), for a person to look at; the
book itself is built into pytest's temporary folder (tests/conftest.py).

Needs Chromium (Debian: `apt-get install chromium`, used at /usr/bin/chromium; Playwright never
downloads a browser here) and the `playwright` Python package. Without them the tests are
skipped, unless BOOK_BROWSER_TEST=1 (set by .ci/run), where they fail.
"""

import functools
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
VIEWPORT = {"width": 1280, "height": 900}  # a laptop screen, as the pages were reviewed
# The legibility rule. Figures are drawn for the column (at most 6.9 in wide at 100 dpi: 690
# px, the column being about 688 px) with no text below 9 pt, i.e. 12.5 px. The theme scales a
# wider image down to the column; shown at LEGIBLE_SCALE of its drawn width or more, 9-pt text
# stays at least 10 px tall, about the size of the page's own smallest captions. An image
# shown smaller than that was drawn too wide and its text is too small to read.
LEGIBLE_SCALE = 0.8
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# The browser reaches no network host: every request that leaves file:// is aborted by the test
# itself (so the result is the same online and offline), and the console errors those aborted
# requests cause are ignored. Only these hosts may be requested; any other external request
# fails the test (a chapter must not depend on a host we did not decide to depend on):
EXTERNAL_HOSTS = {
    # On pages with a stored ipywidget, the widget manager @jupyter-widgets/html-manager,
    # loaded from the CDN by myst-nb. (MathJax is served from the book's own _static folder
    # by sphinx-mathjax-offline: test_maths_renders_with_the_network_blocked.)
    "cdn.jsdelivr.net": "the ipywidgets HTML manager (CDN)",
    # require.js, loaded by myst-nb on pages with a stored ipywidget.
    "cdnjs.cloudflare.com": "require.js for the ipywidgets HTML manager (CDN)",
    # thebe (live code on the page); sphinx-thebe only loads it when thebe is launched.
    "unpkg.com": "thebe (CDN), loaded only when live code is launched",
}
# The Colab launch link is followed (answered with a stub page, nothing leaves the machine).
COLAB_URL = CONFIG.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com")
COLAB_HOST = urlsplit(COLAB_URL).hostname
# Errors the themes' own scripts print on every build of this stack, harmless, exact text:
KNOWN_THEME_ERRORS = {
    # sphinx-thebe 0.3.1 adds its inline config script (`const THEBE_JS_URL = ...`) twice to
    # every page under Sphinx 7.4; the second copy throws, the first already set the constants,
    # and this book does not enable thebe.
    "Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme logs this with console.error on a reader's first visit (no light/dark
    # choice saved yet) and then uses "auto".
    "Got invalid theme mode: . Resetting to auto.",
}
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = re.compile(r"\b(running|live) (Python |Jupyter )?kernel", re.IGNORECASE)
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def toc_pages(entries=None) -> list[str]:
    """Every file in _toc.yml, in reading order (parts, chapters and nested sections)."""
    if entries is None:
        return [TOC["root"], *toc_pages(TOC.get("parts", []) + TOC.get("chapters", []))]
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("chapters", "sections"):
            files += toc_pages(entry.get(key, []))
    return files


PAGES = toc_pages()
CHAPTERS = [p for p in PAGES if (ROOT / (p + ".ipynb")).exists()]  # notebook pages


def notebook_outputs(page: str) -> list[dict]:
    cells = json.loads((ROOT / (page + ".ipynb")).read_text())["cells"]
    return [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]


def colab_url(page: str) -> str:
    """Where Colab must open the notebook of `page`: the repository and branch of _config.yml
    and the notebook's real path in the repository (so a wrong path_to_book is caught too)."""
    repo = CONFIG["repository"]
    org_repo = urlsplit(repo["url"]).path.strip("/")
    base = COLAB_URL.rstrip("/")
    return f"{base}/github/{org_repo}/blob/{repo.get('branch', 'main')}/{page}.ipynb"


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


@functools.cache
def html_ids(path: Path) -> set[str]:
    """The ids (and <a name>s) a built page defines, read from the file."""
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return parser.ids


# --- the browser --------------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    missing = []
    exe = _chromium()
    if exe is None:
        missing.append("Chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install -r requirements.txt)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if os.environ.get("BOOK_BROWSER_TEST") == "1":
            pytest.fail(reason + " (BOOK_BROWSER_TEST=1: failing instead of skipping)")
        pytest.skip(reason + "; set BOOK_BROWSER_TEST=1 to fail instead")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def html(book_build) -> Path:
    if not (book_build.html / (PAGES[0] + ".html")).exists():
        pytest.fail("the book did not build: see test_book_builds_without_warnings")
    return book_build.html


@dataclass
class Visit:
    """What one page load showed: problems collected while loading, and the DOM's facts."""

    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    ignored: list[str] = field(default_factory=list)  # the same, ignored (known, external)
    external: set[str] = field(default_factory=set)  # external URLs requested (all aborted)
    facts: dict = field(default_factory=dict)


def _route(route):
    url = route.request.url
    if url.startswith(("file:", "data:", "blob:")):
        route.continue_()
    elif urlsplit(url).hostname == COLAB_HOST:
        route.fulfill(status=200, content_type="text/html", body="<title>Colab stub</title>")
    else:
        route.abort()


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport=VIEWPORT)
    ctx.route("**/*", _route)
    yield ctx
    ctx.close()


def open_page(context, html: Path, page: str):
    """Opens `page` in a new tab and returns (tab, Visit); the Visit fills in while loading."""
    tab = context.new_page()
    visit = Visit()

    def on_console(msg):
        if msg.type != "error":
            return
        where = msg.location.get("url", "")
        text = f"{msg.text} [{where}]"
        external = urlsplit(where).hostname in EXTERNAL_HOSTS
        known = msg.text in KNOWN_THEME_ERRORS
        (visit.ignored if external or known else visit.errors).append(text)

    def on_pageerror(exc):
        message = str(exc.message if hasattr(exc, "message") else exc)
        (visit.ignored if message in KNOWN_THEME_ERRORS else visit.errors).append(message)

    def on_request(request):
        if not request.url.startswith(("file:", "data:", "blob:")):
            visit.external.add(request.url)

    def on_requestfailed(request):
        if request.url.startswith("file:"):
            visit.errors.append(f"failed to load {request.url}: {request.failure}")

    tab.on("console", on_console)
    tab.on("pageerror", on_pageerror)
    tab.on("request", on_request)
    tab.on("requestfailed", on_requestfailed)
    tab.goto((html / (page + ".html")).as_uri(), wait_until="load")
    return tab, visit


FACTS_JS = """() => {
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  return {
    images: [...document.images].map(i => ({
      src: i.getAttribute('src').slice(0, 120), width: i.naturalWidth, complete: i.complete,
      shown: shown(i) && i.getBoundingClientRect().width > 0,
      in_article: !!i.closest('article'),
    })),
    links: [...document.querySelectorAll('a[href]')].map(a => ({
      raw: a.getAttribute('href'), url: a.href})),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    layout: layout(),
  };
}"""

# What a reader cannot see without scrolling sideways, and figures shrunk below legibility.
# A block "overflows" when its content is wider than the box the column gives it (the theme
# then adds a horizontal scroll bar and the end of each long line is off-screen).
LAYOUT_JS = """function layout() {
  const article = document.querySelector('article.bd-article') || document.body;
  const column = article.clientWidth;
  const text = e => (e.innerText || '').trim().split('\\n')[0].slice(0, 70);
  const wide = e => e.scrollWidth > e.clientWidth + 2;
  const where = e => e.closest('.cell_output, .output') ? 'output' :
                     e.closest('.cell_input, .cell') ? 'code' : 'text';
  const blocks = [...article.querySelectorAll('pre')].filter(e => e.clientWidth > 0 && wide(e))
    .map(e => ({kind: where(e), width: e.scrollWidth, box: e.clientWidth, text: text(e)}));
  const tables = [...article.querySelectorAll('table')].filter(t => t.clientWidth > 0)
    .filter(t => t.getBoundingClientRect().width > column + 2
                 || (t.parentElement && wide(t.parentElement)))
    .map(t => ({width: Math.round(t.getBoundingClientRect().width), text: text(t)}));
  const images = [...article.querySelectorAll('img')]
    .filter(i => i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)
    .map(i => ({src: i.getAttribute('src').slice(-60), natural: i.naturalWidth,
                shown: Math.round(i.getBoundingClientRect().width)}));
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  const searches = [...document.querySelectorAll('.search-button-field, form.bd-search')]
    .filter(e => shown(e) && !e.closest('dialog')).length;
  return {column, blocks, tables, images, searches};
}"""


@pytest.fixture(scope="module")
def visits(context, html) -> dict[str, Visit]:
    """Every page of the ToC, loaded once; the per-page tests below read these records."""
    result = {}
    start = time.perf_counter()
    for page in PAGES:
        tab, visit = open_page(context, html, page)
        tab.wait_for_timeout(200)  # late console messages (async scripts) arrive
        visit.facts = tab.evaluate("() => { " + LAYOUT_JS + "; return (" + FACTS_JS + ")(); }")
        tab.close()
        result[page] = visit
    print(f"browser: loaded {len(PAGES)} pages in {time.perf_counter() - start:.1f} s")
    return result


# --- the checks ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_console_errors(visits, page):
    visit = visits[page]
    assert not visit.errors, f"{page}: console errors:\n" + "\n".join(visit.errors)
    unknown = sorted(u for u in visit.external if urlsplit(u).hostname not in EXTERNAL_HOSTS)
    assert not unknown, f"{page} requests unexpected external URLs (vendor them?): {unknown}"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_figures_render(visits, page):
    images = visits[page].facts["images"]
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{page}: images that did not render: {broken}"
    source = ROOT / (page + ".ipynb")
    if source.exists() and any(
        m in o.get("data", {}) for o in notebook_outputs(page) for m in IMAGE_MIMES
    ):
        shown = [i for i in images if i["in_article"] and i["shown"] and i["width"] > 0]
        assert shown, f"{page}: the notebook has figures but the page shows none"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_internal_links_resolve(visits, html, page):
    """Every link to a local file exists; a link with #anchor finds that id on its page."""
    here = (html / (page + ".html")).resolve()
    broken = []
    for link in visits[page].facts["links"]:
        url = urlsplit(link["url"])
        if url.scheme != "file":
            continue
        target = Path(unquote(url.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{link['raw']} (no file {target.name})")
            continue
        anchor = unquote(url.fragment)
        if anchor and target.suffix == ".html":
            ids = set(visits[page].facts["ids"]) if target == here else html_ids(target)
            if anchor not in ids:
                broken.append(f"{link['raw']} (no id {anchor!r} in {target.name})")
    assert not broken, f"{page}: broken internal links:\n" + "\n".join(broken)


@pytest.mark.slow
@pytest.mark.parametrize("page", CHAPTERS)
def test_colab_launch_link_opens_the_chapter_notebook(context, html, page):
    tab, _ = open_page(context, html, page)
    try:
        link = tab.locator(".dropdown-launch-buttons a[href*='colab']")
        assert link.count() == 1, f"{page}: expected one Colab launch link, found {link.count()}"
        assert link.get_attribute("href") == colab_url(page)
        tab.locator(".dropdown-launch-buttons button.dropdown-toggle").click()
        link.wait_for(state="visible", timeout=5000)
        with tab.expect_popup() as popup:  # target=_blank: Colab opens in a new tab
            link.click()
        assert popup.value.url == colab_url(page)
        popup.value.close()
    finally:
        tab.close()


WIDGETS_JS = """(marker) => {
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden'
    && e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0;
  return {
    views: document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"], .jupyter-widgets').length,
    texts: [...document.querySelectorAll('.cell_output')].filter(shown)
      .map(e => e.innerText),
  };
}"""


@pytest.mark.slow
@pytest.mark.parametrize("page", CHAPTERS)
def test_each_widget_shows_once_as_its_snapshot(context, html, page):
    """A widget lives in a kernel: on the site its output shows its static snapshot, once.

    Each stored widget output also carries the snapshot as HTML
    (``helpers.widgets.LiveOrSnapshot``); the site renders no widget view, so neither a dead
    control nor a second copy of the snapshot appears, and no widget script is fetched.
    """
    outputs = [o for o in notebook_outputs(page) if WIDGET_MIME in o.get("data", {})]
    for o in outputs:
        assert "text/html" in o["data"], f"{page}: a widget output has no snapshot (LiveOrSnapshot)"
    tab, visit = open_page(context, html, page)
    try:
        found = tab.evaluate(WIDGETS_JS, WIDGET_NOTE.pattern)
    finally:
        tab.close()
    assert found["views"] == 0, f"{page}: a widget view is rendered on the static page"
    for o in outputs:
        snapshot = re.sub(r"<[^>]+>", " ", "".join(o["data"]["text/html"]))
        first = " ".join(snapshot.split()[:6])
        shown = sum(" ".join(t.split()).count(first) for t in found["texts"])
        assert shown == 1, f"{page}: the snapshot starting {first!r} is shown {shown} times"


@pytest.mark.slow
@pytest.mark.parametrize("page", CHAPTERS)
def test_solution_toggles_open(context, html, page):
    solutions = sum(
        "solution" in c.get("metadata", {}).get("tags", [])
        for c in json.loads((ROOT / (page + ".ipynb")).read_text())["cells"]
    )
    tab, _ = open_page(context, html, page)
    try:
        cells = tab.locator(".cell.tag_solution")
        assert cells.count() == solutions, f"{page}: {solutions} solutions, {cells.count()} shown"
        for i in range(cells.count()):
            code = cells.nth(i).locator(".cell_input")
            assert not code.is_visible(), f"{page}: solution {i} is not hidden"
            cells.nth(i).locator("summary").first.click()
            code.wait_for(state="visible", timeout=5000)
            assert code.inner_text().strip(), f"{page}: solution {i} opened on empty code"
    finally:
        tab.close()


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_code_and_outputs_fit_the_column(visits, page):
    """No line of code, printed output, warning or error runs past the text column."""
    blocks = visits[page].facts["layout"]["blocks"]
    lines = [f"{b['kind']} {b['width']} px in {b['box']} px: {b['text']!r}" for b in blocks]
    assert not lines, f"{page}: blocks wider than the column:\n" + "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_tables_fit_the_column(visits, page):
    layout = visits[page].facts["layout"]
    lines = [
        f"{t['width']} px (column {layout['column']} px): {t['text']!r}" for t in layout["tables"]
    ]
    assert not lines, f"{page}: tables wider than the column:\n" + "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_figures_are_shown_at_a_legible_size(visits, page):
    """A figure drawn wider than the column is shrunk, and its text with it (LEGIBLE_SCALE)."""
    small = [
        f"{i['src']}: drawn {i['natural']} px, shown {i['shown']} px"
        for i in visits[page].facts["layout"]["images"]
        if i["shown"] < LEGIBLE_SCALE * i["natural"]
    ]
    assert not small, f"{page}: figures shrunk below {LEGIBLE_SCALE:.0%}:\n" + "\n".join(small)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_one_search_box(visits, page):
    """The themes' two search fields were both shown (see _ext/one_search_box.py)."""
    assert visits[page].facts["layout"]["searches"] == 1, f"{page}: search boxes shown"


@pytest.mark.slow
def test_screenshots(context, book_build):
    """A full-page screenshot of every page, for a person to look at (not compared)."""
    out = ROOT / "_build" / "screenshots"  # the repository's (git-ignored) build folder
    out.mkdir(parents=True, exist_ok=True)
    for page in PAGES:
        tab, _ = open_page(context, book_build.html, page)
        tab.wait_for_timeout(300)  # fonts and MathJax settle
        path = out / (Path(page).name + ".png")
        tab.screenshot(path=str(path), full_page=True)
        tab.close()
        assert path.stat().st_size > 10_000, f"{path.name} looks empty"
    print(f"screenshots: {out.relative_to(ROOT)} ({len(PAGES)} pages)")


@pytest.mark.slow
def test_maths_renders_with_the_network_blocked(context, html):
    """A classroom without internet: every formula is typeset by the book's own MathJax."""
    pages = [p for p in PAGES if 'class="math' in (html / (p + ".html")).read_text()]
    assert pages, "no page has maths: the check would test nothing"
    raw = []
    for page in pages:
        tab, _ = open_page(context, html, page)  # every request off file:// is aborted
        tab.wait_for_function(
            "() => document.querySelectorAll('.math').length === "
            "document.querySelectorAll('.math mjx-container, mjx-container.MathJax').length "
            "|| document.querySelectorAll('mjx-container').length >= "
            "document.querySelectorAll('.math').length",
            timeout=15_000,
        )
        left = tab.evaluate(
            "() => [...document.querySelectorAll('.math')]"
            ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 40))"
        )
        raw += [f"{page}: {text}" for text in left]
        tab.close()
    assert not raw, "maths left as raw TeX with the network blocked:\n" + "\n".join(raw)
