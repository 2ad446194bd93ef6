"""Browser tests of the web UI: Playwright driving Debian's Chromium (never a downloaded browser)
against a real `mlgrid server` process, with data logged through the mlflow and mlgrid clients.

Screenshots go to <pytest's basetemp>/ui-screenshots/; each test prints the paths of its own.
This folder is a package for the same reason as tests/compat (see its conftest)."""
import os
import shutil

import pytest

from compat.conftest import mlflow_server_url  # noqa: F401 - the session's server, shared with tests/compat

CHROMIUM = os.environ.get("MLGRID_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


# Module scope: Playwright's sync API keeps an event loop running while it is open, which the
# asyncio tests that xdist may run next on this worker could not start theirs beside.
@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set MLGRID_TEST_CHROMIUM) to run the UI tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, mlflow_server_url):  # noqa: F811 - the fixture imported above
    """A fresh page on the UI's origin; JavaScript errors fail the test."""
    context = browser.new_context(base_url=mlflow_server_url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def screenshot(page, tmp_path_factory, request):
    """screenshot(name): save the page as ui-screenshots/<test>-<name>.png and print its path."""
    folder = tmp_path_factory.getbasetemp() / "ui-screenshots"
    folder.mkdir(exist_ok=True)

    def take(name: str) -> str:
        path = folder / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=False)
        print(f"screenshot: {path}")
        return str(path)

    return take
