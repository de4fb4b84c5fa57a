"""The HTML report in a real headless Chromium: no console errors, every plot rendered by plotly.js.

Skips with a reason when chromium or chromedriver is missing (``.ci/run`` installs both with
apt). Set HARNESS_SCREENSHOT=FILE to keep the full-page screenshot for a look.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator, Optional

import pytest

from harness.report.html import write_html
from tests.unit.test_report_plots import synthetic_data

pytestmark = pytest.mark.browser


def _binary(*names: str) -> Optional[str]:
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    """A headless Chromium driven by selenium (console log captured), or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    browser = _binary("chromium", "chromium-browser", "google-chrome")
    chromedriver = _binary("chromedriver")
    if browser is None or chromedriver is None:
        pytest.skip("no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,4000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=webdriver.ChromeService(chromedriver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_report_renders_without_console_errors(driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = tmp_path / "report.html"
    write_html(synthetic_data(tmp_path / "sweep-a"), [("peak memory (MiB)", "<table><tr><th>r</th><td class='best'>1</td></tr></table>")],
               page)
    assert (tmp_path / "plotly.min.js").is_file()  # the plots below draw only if the sibling plotly.js loads
    driver.get(page.as_uri())
    plots = driver.find_elements(By.CSS_SELECTOR, "div.plotly-graph-div")
    assert len(plots) == 6
    WebDriverWait(driver, 10).until(lambda d: all(p.find_elements(By.CSS_SELECTOR, ".main-svg") for p in plots))
    for plot in plots:
        assert plot.find_elements(By.CSS_SELECTOR, ".main-svg"), plot.get_attribute("id")
        assert plot.find_elements(By.CSS_SELECTOR, ".trace"), f"{plot.get_attribute('id')}: no trace drawn"
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, max(int(height) + 100, 800))
    shot = Path(os.environ.get("HARNESS_SCREENSHOT") or tmp_path / "report.png")
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
    severe = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    assert not severe, severe
