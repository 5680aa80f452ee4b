"""Browser tests: a headless Chromium (driven by Playwright) against a live server of the demo shop.

The live server (pytest-django's ``live_server``) runs in a thread of the test
process against the test database, so every test has a transactional
database and builds its own small shop: ``seed_catalog`` (drawn pictures),
``seed_people`` (demo people and their history) and an encoded catalogue (the
real MiniLM text space, a tiny randomly initialised CLIP for pictures).

Chromium is the Debian package (``/usr/bin/chromium``, or ``SHOP_DEMO_CHROMIUM``);
Playwright's own browser downloads are never used. Each person in a test gets a
fresh profile (``--user-data-dir`` in the test's folder, so their own cookies)
and runs ``--headless`` with ``CHROMIUM_FLAGS``. Without Chromium these
tests are skipped, saying so. Screenshots of the main pages go to
``SHOP_DEMO_SCREENSHOTS`` when it is set (README: docs/screenshots), else to
the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connections
from PIL import Image

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}
CATALOGUE_SIZE = 48  # about four products per category
SKIP_REASON = "Chromium is not installed (apt-get install chromium, or set SHOP_DEMO_CHROMIUM): browser tests skipped"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives a headless Chromium against a live server (skipped without Chromium)"
    )


def pytest_collection_modifyitems(config, items):
    """Without Chromium, skip the browser tests before their (slow) fixtures are set up."""
    if chromium_path() is None:
        for item in items:
            if item.get_closest_marker("browser"):
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def chromium_path() -> str | None:
    """SHOP_DEMO_CHROMIUM when set (and only it), else Debian's chromium."""
    if os.environ.get("SHOP_DEMO_CHROMIUM"):
        candidates = [os.environ["SHOP_DEMO_CHROMIUM"]]
    else:
        candidates = ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """``browser(name)``: a fresh Chromium profile (own --user-data-dir, own cookies) per person; one page each."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(SKIP_REASON)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the pinned test environment has it
        pytest.fail(
            "The browser tests need Playwright for Python: pip install -e '.[test]' (never 'playwright install')."
        )
    # Playwright's sync API keeps an event loop running in this thread, which Django takes for an async
    # context; the test's own ORM calls (assertions) are plain synchronous code. The server has its own thread.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    contexts = []
    with sync_playwright() as playwright:

        def open_page(name: str = "shopper"):
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / ("profile-%s" % name)),
                executable_path=executable,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport=VIEWPORT,
                locale="en-GB",
                timezone_id="UTC",
            )
            context.set_default_timeout(15_000)
            contexts.append(context)
            return context.pages[0] if context.pages else context.new_page()

        yield open_page
        for context in contexts:
            context.close()
        # While Playwright's loop runs, Django keeps this thread's connections in a context-local store
        # (asgiref), so the test's queries used a connection of their own: close it before the loop stops.
        connections.close_all()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, name)``: a full-page PNG in SHOP_DEMO_SCREENSHOTS (or the test's folder)."""
    folder = Path(os.environ.get("SHOP_DEMO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / ("%s.png" % name)
        page.wait_for_load_state("load")
        page.evaluate("() => Promise.all(Array.from(document.images).map(img => img.decode().catch(() => null)))")
        png = page.screenshot(full_page=True, animations="disabled")
        picture = Image.open(io.BytesIO(png)).convert("RGB")
        assert picture.width == VIEWPORT["width"] and len(picture.resize((64, 64)).getcolors(64 * 64)) > 50  # not blank
        # 256 colours are plenty for a page of flat colours, and a third of the size in git.
        picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
        return path

    return take


@pytest.fixture
def shop(transactional_db, ragrec_encoders, settings, tmp_path_factory):
    """A small demo shop with pictures, people, history and encoded products; returns the product queryset."""
    from ragrec_django.services import encoding
    from shop_demo.catalog.models import Product

    settings.MEDIA_ROOT = str(tmp_path_factory.getbasetemp() / "browser-media")  # pictures drawn once per session
    settings.SHOP_DEMO_SERVE_MEDIA = True
    settings.SHOP_DEMO_ONE_CLICK_LOGIN = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
    # The tiny CLIP is randomly initialised: it serves the photo search (any answer will do) but does not
    # rank text searches or similar items, which come from the real MiniLM text space as in the demo.
    settings.RAGREC = {
        **settings.RAGREC,
        "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 1.0, "image": 0.0},
        "SIMILAR_WEIGHTS": {"text": 1.0, "image": 0.0},
    }
    out = io.StringIO()
    call_command("seed_catalog", count=CATALOGUE_SIZE, stdout=out)
    call_command("seed_people", stdout=out)
    pks = list(Product.objects.values_list("pk", flat=True))
    for space in ("text", "image", "clip-text"):
        encoding.encode_items(space, pks)
    return Product.objects.active()
