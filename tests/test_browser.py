"""End to end in a real browser: start the explorer with ``streamlit run`` on a free localhost port (headless),
open it in headless Chromium (Debian's ``chromium`` at /usr/bin/chromium, driven by the Python ``playwright``
package; ``playwright install`` is never used), pick an item, switch an intervention on, and check what the page
then shows against the same computation done here.

Needs ``scripts/install_browser.sh`` (CI runs it). Outside CI the test is skipped when Chromium or playwright is
missing; in CI (``CI`` set) it fails instead, so a missing install cannot pass unnoticed.

Set ``MECHINTERP_SCREENSHOTS=DIR`` to also save a full-height PNG of every page into DIR.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import NATURAL_STORIES
from mechinterp.cli.explore import streamlit_command
from mechinterp.explore import compute
from mechinterp.explore.demo import build_demo
from mechinterp.stimuli import load_suite

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {"": "Surprisal and entropy", "probes": "Reading probes", "patching": "Activation patching",
         "saes": "SAE features", "collapse": "Collapse: intervene and watch the surprisal", "humans": "Humans",
         "results": "Results found"}
LONG = 240_000  # ms: the first page load imports torch and loads the model (slow on a loaded machine)

try:
    import playwright.sync_api  # noqa: F401

    HAVE_PLAYWRIGHT = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PLAYWRIGHT = False

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("CI") and not (CHROMIUM.exists() and HAVE_PLAYWRIGHT),
                       reason="needs /usr/bin/chromium and playwright: bash scripts/install_browser.sh"),
]


@pytest.fixture(scope="session")
def demo_results(tiny_model, tmp_path_factory) -> Path:
    """The same demo directory test_explorer.py uses (built once; a complete one is reused)."""
    root = tmp_path_factory.getbasetemp() / "explorer-demo"
    return build_demo(tiny_model, root, naturalstories=NATURAL_STORIES)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tiny_dirs, demo_results, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = dict(os.environ, MECHINTERP_EXPLORER_MODEL=str(tiny_dirs["llama"]),
               MECHINTERP_EXPLORER_RESULTS=str(demo_results), MECHINTERP_EXPLORER_SUITE="npz",
               MECHINTERP_NO_PROGRESS="1")
    cmd = [*streamlit_command(port, headless=True), "--server.fileWatcherType", "none",
           "--client.toolbarMode", "minimal"]  # what `mechinterp explore` runs
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def bits(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"([+-]\d+\.\d+) bits", text)]


def wait_idle(page) -> None:
    """Until the app's script run has finished (Streamlit marks its state on the app's root element)."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=LONG)


def test_pick_item_and_switch_intervention_on(server, browser, tiny_model):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(server + "/")
    expect(page.get_by_role("heading", name="Surprisal and entropy")).to_be_visible(timeout=LONG)
    sidebar = page.locator("[data-testid='stSidebar']")
    expect(page.locator("[data-testid='stMetric']").first).to_be_visible(timeout=LONG)

    # pick item 4 in the sidebar
    sidebar.locator("[data-testid='stSelectbox']").filter(has_text="Item").click()
    page.get_by_role("option", name=re.compile(r"^4: When the fans")).click()
    expect(page.get_by_text("When the fans cheered the team scored").first).to_be_visible(timeout=LONG)
    expect(page.locator("[data-testid='stMetric']").filter(has_text="scored").first).to_be_visible(timeout=LONG)

    # go to the Collapse page and switch the default intervention (commit to the preferred reading) on
    sidebar.get_by_role("link", name="Collapse").click()
    expect(page.get_by_role("heading", name=PAGES["collapse"])).to_be_visible(timeout=LONG)
    expect(page.get_by_text("The intervention is off")).to_be_visible(timeout=LONG)
    page.get_by_text("Intervention on", exact=True).click()
    banner = page.locator("[data-testid='stAlert']").filter(has_text="Intervention on:")
    expect(banner).to_be_visible(timeout=LONG)
    wait_idle(page)
    spec = banner.locator("code").inner_text().strip()
    assert spec.startswith(f"clamp:layer={tiny_model.n_layers // 2},target=preferred")
    assert spec.endswith("fit=readings")

    # what the page shows = the same intervention fitted and scored here
    suite = load_suite("npz")
    item = suite.items[3]
    base = compute.item_effects(compute.item_words(tiny_model, suite, item), suite, item)
    iv = compute.build_intervention(tiny_model, spec, suite)
    new = compute.item_effects(compute.item_words(tiny_model, suite, item, iv), suite, item)
    reading = page.locator("[data-testid='stMetric']").filter(has_text="P(dispreferred reading)")
    shift = compute.reading_shift(compute.item_readings(tiny_model, suite, item),
                                  compute.item_readings(tiny_model, suite, item, iv))
    p_after = shift.loc[shift["ambiguous"], "P(dispreferred) after"].iloc[0]
    assert reading.count() == 1 and f"{p_after:.3f}" in reading.inner_text()
    metrics = page.locator("[data-testid='stMetric']").filter(has_text="ROI")
    assert metrics.count() == len(base) == 3
    for k in range(3):
        text = metrics.nth(k).inner_text()
        assert f"ROI {k} ({base['word'].iloc[k]})" in text and "vs original" in text
        shown, delta = bits(text)
        assert abs(shown - new["effect_bits"].iloc[k]) <= 0.006
        assert abs(delta - (new["effect_bits"].iloc[k] - base["effect_bits"].iloc[k])) <= 0.011
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 1
    expect(page.get_by_text("Surprisal with the intervention on").first).to_be_visible()

    # the Humans page now shows the item with and without the intervention
    sidebar.get_by_role("link", name="Humans").click()
    expect(page.get_by_role("heading", name="Humans")).to_be_visible(timeout=LONG)
    expect(page.get_by_text("This item (bits)")).to_be_visible(timeout=LONG)
    wait_idle(page)
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 1
    page.close()


def test_every_page_renders_without_errors(server, browser):
    """Each page, opened by its URL on item 2, shows its title and no error or exception."""
    from playwright.sync_api import expect

    shots = os.environ.get("MECHINTERP_SCREENSHOTS")
    page = browser.new_page(viewport={"width": 1400, "height": 2600 if shots else 1100})
    for path, title in PAGES.items():
        page.goto(f"{server}/{path}?suite=npz&item=2")
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=LONG)
        wait_idle(page)
        if path != "results":  # every page but the catalogue shows the item
            expect(page.get_by_text("As Anna dressed the baby wriggled").first).to_be_visible(timeout=LONG)
        assert page.locator("[data-testid='stException']").count() == 0, path
        errors = page.locator("[data-testid='stAlertContentError']")
        assert errors.count() == 0, [errors.nth(i).inner_text() for i in range(errors.count())]
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{path or 'surprisal'}.png"), full_page=True)
    page.close()


def test_bad_input_in_the_browser_is_a_message(server, browser):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/?suite=npz&item=999")
    expect(page.locator("[data-testid='stAlertContentError']").filter(has_text="has no item '999'")).to_be_visible(
        timeout=LONG)
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_query_parameter_outside_the_allowed_folders_is_refused(server, browser, tmp_path_factory):
    """``?suite=`` naming a file outside the results directory and the package's data: a refusal on the
    page, and nothing of the file."""
    from playwright.sync_api import expect

    sentinel = "SENTINEL-browser-4c1d"
    secret = tmp_path_factory.mktemp("secret") / "secret.csv"
    secret.write_text(f"{sentinel},b,c\n1,2,3\n")
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server}/?suite={urllib.parse.quote(str(secret))}")
    errors = page.locator("[data-testid='stAlertContentError']")
    expect(errors.first).to_contain_text("is refused", timeout=LONG)
    wait_idle(page)
    assert sentinel not in page.content()
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()
