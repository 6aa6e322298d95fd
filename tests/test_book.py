"""The book as a reader sees it: a strict offline build, opened in headless Chromium.

The test builds the real book (``_config.yml``, ``_toc.yml``, ``book/``) in a temporary copy with
a small grid, so that it stays within the test budget: the teaching chapters run their examples,
the generalizability analysis runs on the study's published table, and every other run notebook
is left out by :func:`robustir.book.available_toc`. It then opens every chapter in Chromium,
takes a screenshot, and checks links, figures and rendered math.
"""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from robustir.book import available_toc, build_book

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "_vendor" / "mathjax" / "tex-mml-chtml.js"


class _Ids(HTMLParser):
    """Collects every ``id`` attribute of an HTML page (the targets of ``#fragment`` links)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for name, value in attrs if name == "id" and value)


def _ids(page: Path, cache: dict[Path, set[str]]) -> set[str]:
    if page not in cache:
        parser = _Ids()
        parser.feed(page.read_text(encoding="utf-8"))
        cache[page] = parser.ids
    return cache[page]


def _small_grid(directory: Path) -> Path:
    grid = {
        "results": "results", "runs_dir": "book/runs", "workers": 1, "timeout_s": 600,
        "analyses": [],
        "aggregates": [{
            "notebook": "notebooks/generalizability.py",
            "parameters": {"classify_query_types": False,
                           "reference_dir": str(ROOT.parent / "shared" / "reference")},
        }, {"notebook": "notebooks/findings.py", "parameters": {}}],
    }
    path = directory / "small.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    if not MATHJAX.is_file():
        pytest.skip("MathJax is not vendored: run `make setup` (scripts/fetch-mathjax.sh)")
    if not (ROOT / "notebooks" / "generalizability.py").is_file():
        pytest.skip("notebooks/generalizability.py is not written yet")
    if not (ROOT.parent / "shared" / "reference" / "li2026_per_dataset_ndcg10.csv").is_file():
        pytest.skip("the study's published tables are not in ../shared/reference")
    root = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "_toc.yml", "jupytext.toml", "book", "notebooks"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("runs"))
        else:
            shutil.copy(source, root / name)
    (root / "_vendor").symlink_to(ROOT / "_vendor")
    html = build_book(_small_grid(root), root=root)
    return html


@pytest.fixture(scope="module")
def browser():
    # only tests marked browser use it: conftest skips or fails them when Chromium is missing
    from selenium import webdriver as selenium
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    options = selenium.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,900"):
        options.add_argument(flag)
    session = selenium.Chrome(service=Service(driver), options=options)
    session.set_page_load_timeout(60)
    yield session
    session.quit()


def _chapters(html: Path) -> list[Path]:
    toc = yaml.safe_load((html.parents[1] / "_build" / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections", []) + entry.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part["chapters"])
    return [html / f"{name}.html" for name in names]


def test_strict_build_leaves_out_only_unproduced_notebooks(built_book):
    root = built_book.parents[1]
    missing = available_toc(root, root / "_build" / "check_toc.yml")
    assert "book/runs/aggregates/generalizability" not in missing
    assert all(name.startswith("book/runs/") for name in missing)
    # The executed analysis is rendered as executed, with the cell papermill injected (which
    # holds machine paths) hidden from readers.
    page = (built_book / "book/runs/aggregates/generalizability.html").read_text()
    cells = re.split(r'<div class="cell ', page)
    injected = [cell for cell in cells if cell.startswith("tag_injected-parameters")]
    assert len(injected) == 1 and "tag_remove-input" in injected[0].split('"')[0]
    assert "cell_input" not in injected[0]


#: Text a reader must never see on a page.
FORBIDDEN = ("Traceback", "NBVAL", str(ROOT))
#: Reader widths: a laptop and a phone.
WIDTHS = (1400, 420)


def _page_problems(browser, name: str, width: int, forbidden: tuple[str, ...] = FORBIDDEN) -> list[str]:
    """What is wrong with the page open in ``browser`` at ``width`` pixels."""
    problems = []
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    if overflow > 1:
        problems.append(f"{name} at {width}px: the page scrolls sideways by {overflow}px")
    broken = browser.execute_script(
        "return Array.from(document.images).filter("
        "img => !(img.complete && img.naturalWidth > 0)).map(img => img.src)")
    if broken:
        problems.append(f"{name}: images that did not load: {broken}")
    text = browser.execute_script("return document.body.innerText")
    problems += [f"{name}: shows {word!r}" for word in forbidden if word in text]
    if re.search(r"\$\$|\\\(|\\\[", text):
        problems.append(f"{name}: untypeset math in the text")
    empty = browser.execute_script(
        "return Array.from(document.querySelectorAll('.admonition.findings'))"
        ".filter(box => box.querySelectorAll('td').length === 0).length")
    if empty:
        problems.append(f"{name}: {empty} findings box(es) without a row")
    return problems


@pytest.mark.browser
def test_every_chapter_renders_with_links_figures_and_math(built_book, browser):
    chapters = _chapters(built_book)
    assert len(chapters) >= 12
    id_cache: dict[Path, set[str]] = {}
    screenshots = built_book.parent / "screenshots"
    problems, math_pages = [], 0
    for width in WIDTHS:
        browser.set_window_size(width, 900)
        (screenshots / str(width)).mkdir(parents=True, exist_ok=True)
        for page in chapters:
            assert page.is_file(), f"{page} was not built"
            browser.get(page.as_uri())
            name = str(page.relative_to(built_book)).replace("/", "_")
            if page.name.endswith(".html") and width == WIDTHS[0]:
                source = page.read_text(encoding="utf-8")
                if re.search(r'class="math', source):
                    math_pages += 1
                    rendered = browser.execute_script(
                        "return new Promise(done => (window.MathJax && MathJax.startup"
                        " ? MathJax.startup.promise : Promise.resolve()).then("
                        "() => done(document.querySelectorAll('mjx-container').length)));")
                    assert rendered > 0, f"{name}: math present but MathJax rendered nothing"
                for href in browser.execute_script(
                        "return Array.from(document.querySelectorAll('a[href]'), a => a.href)"):
                    url = urlparse(href)
                    if url.scheme != "file":
                        continue
                    target = Path(unquote(url.path))
                    assert target.exists(), f"{name}: broken link to {href}"
                    if url.fragment and target.suffix == ".html":
                        assert unquote(url.fragment) in _ids(target, id_cache), \
                            f"{name}: link to missing anchor {href}"
            shot = screenshots / str(width) / f"{name}.png"
            assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000, name
            # neither the checkout's path nor the build folder's
            problems += _page_problems(browser, name, width, FORBIDDEN + (str(built_book.parents[1]),))
    assert problems == [], "\n".join(problems)
    assert math_pages >= 5  # every teaching chapter has display math


@pytest.mark.browser
def test_figures_of_the_analysis_are_images_that_loaded(built_book, browser):
    page = built_book / "book/runs/aggregates/generalizability.html"
    browser.get(page.as_uri())
    sizes = browser.execute_script(
        "return Array.from(document.images, img => [img.naturalWidth, img.naturalHeight])")
    figures = [size for size in sizes if size[0] > 200]
    assert figures, "the generalizability analysis shows no figure"


def test_available_toc_drops_missing_documents_and_empty_parts(tmp_path):
    (tmp_path / "book" / "runs").mkdir(parents=True)
    for name in ("index.md", "intro.md", "runs/present.ipynb"):
        (tmp_path / "book" / name).write_text("x")
    toc = {"format": "jb-book", "root": "book/index", "parts": [
        {"caption": "Results", "chapters": [
            {"file": "book/intro", "sections": [{"file": "book/runs/present"},
                                                {"file": "book/runs/absent"}]},
            {"file": "book/runs/gone", "sections": [{"file": "book/runs/present"}]}]},
        {"caption": "Empty", "chapters": [{"file": "book/runs/absent"}]}]}
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    missing = available_toc(tmp_path, tmp_path / "_build" / "_toc.yml")
    assert missing == ["book/runs/absent", "book/runs/gone", "book/runs/absent"]
    pruned = yaml.safe_load((tmp_path / "_build" / "_toc.yml").read_text())
    assert pruned["parts"] == [{"caption": "Results", "chapters": [
        {"file": "book/intro", "sections": [{"file": "book/runs/present"}]}]}]
