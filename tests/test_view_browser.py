"""sociolab view in a real headless browser: Debian's chromium driven by selenium through
chromedriver (apt package chromium-driver). Opens the run list, a run, filters by a flag, and
checks what is on the page; an agentic run shows its tool calls. Screenshots of the main views go
to a temporary folder, or to $SOCIOLAB_VIEW_SCREENSHOTS (docs/images/ was made that way)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_view import AGENTIC_RUN, DISCUSSION_RUN, sql, store  # noqa: F401 (store: fixture)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return "no chromium (Debian: apt-get install chromium)"
    if not Path(CHROMEDRIVER).exists():
        return "no chromedriver (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")


@pytest.fixture(scope="module")
def viewer(store):  # noqa: F811 (the fixture imported above)
    """`sociolab view` as a user starts it, in its own process; its address from its first line."""
    process = subprocess.Popen([sys.executable, "-m", "sociolab", "view", "--db", str(store), "--port", "0",
                                "--no-browser"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, line + process.stderr.read()
        yield found.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1100", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("SOCIOLAB_VIEW_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("shots")


def screenshot(browser, folder: Path, name: str) -> None:
    path = folder / name
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_open_the_run_list_a_run_and_filter_by_flag(browser, viewer, store, shots):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(viewer)
    assert browser.title == "Runs · sociolab view"
    listed = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "table.runs tbody tr td:first-child a")]
    assert listed == [r for (r,) in sql(store, "SELECT run_id FROM runs ORDER BY run_id")]
    screenshot(browser, shots, "view-runs.png")

    browser.find_element(By.LINK_TEXT, DISCUSSION_RUN).click()
    arrived(browser, url_contains=f"/run/{DISCUSSION_RUN}")
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Run {DISCUSSION_RUN}"
    seed = browser.find_element(By.ID, "m0").find_element(By.CLASS_NAME, "content").text
    assert "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>" in seed
    assert "\\x1b[31mred" in seed and "<U+202E>evil" in seed  # controls shown, not obeyed
    assert browser.execute_script("return window.__pwned === undefined")  # the planted script never ran
    assert browser.find_elements(By.CSS_SELECTOR, ".badge.crash") and browser.find_elements(By.CSS_SELECTOR,
                                                                                             ".badge.error")
    chip = browser.find_element(By.CSS_SELECTOR, ".code[data-flag]")
    judges = [j for (j,) in sql(store, "SELECT DISTINCT judge FROM codes ORDER BY 1")]
    assert all(j in chip.get_attribute("title") for j in judges)  # the rationale on hover names both judges
    browser.execute_script("document.querySelectorAll('h2')[document.querySelectorAll('h2').length - 1]"
                           ".scrollIntoView()")
    screenshot(browser, shots, "view-discussion.png")

    Select(browser.find_element(By.NAME, "flag")).select_by_value("lead")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    arrived(browser, url_contains="flag=lead")
    shown = browser.find_elements(By.CSS_SELECTOR, "div.msg")
    expected = sql(store, """SELECT m.seq FROM messages m JOIN adjudicated_codes a USING (message_id)
                              WHERE m.run_id = ? AND a.flag = 'lead' AND a.by_intersection ORDER BY m.seq""",
                   [DISCUSSION_RUN])
    assert [m.get_attribute("id") for m in shown] == [f"m{s}" for (s,) in expected] and expected
    for message in shown:
        lead = message.find_element(By.CSS_SELECTOR, ".code[data-flag='lead']")
        assert "yes" in lead.get_attribute("class").split() and lead.text.endswith("⇒ ✓")


def arrived(browser, url_contains: str, seconds: float = 30) -> None:
    """Wait for the navigation a click started: selenium does not wait for a form's submission,
    so the next look could still see the page before it."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, seconds).until(expected_conditions.url_contains(url_contains))
    WebDriverWait(browser, seconds).until(lambda b: b.execute_script("return document.readyState") == "complete")


def test_an_agentic_run_shows_its_tool_calls(browser, viewer, store, shots):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(viewer + "?kind=peer_preservation")
    browser.find_element(By.LINK_TEXT, AGENTIC_RUN).click()
    arrived(browser, url_contains=f"/run/{AGENTIC_RUN}")
    outcomes = browser.find_elements(By.XPATH, "//h2[text()='Outcomes']/following-sibling::table[1]//tbody/tr")
    assert len(outcomes) == sql(store, "SELECT count(*) FROM outcomes WHERE run_id = ?", [AGENTIC_RUN])[0][0]
    tools = browser.find_elements(By.CSS_SELECTOR, "div.tool code")
    calls = sql(store, "SELECT tool FROM tool_calls WHERE run_id = ? ORDER BY seq", [AGENTIC_RUN])
    assert [t.text.split("(")[0] for t in tools] == [c for (c,) in calls]
    first = browser.find_element(By.CSS_SELECTOR, "div.tool details")
    first.find_element(By.TAG_NAME, "summary").click()
    assert first.find_element(By.TAG_NAME, "pre").is_displayed()
    browser.execute_script("document.getElementById('m1').scrollIntoView()")
    screenshot(browser, shots, "view-agentic.png")
    browser.get(viewer + "messages?q=agent&errors=1")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Search messages"
