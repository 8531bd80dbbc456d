"""The console in a real browser (Debian's headless chromium, driven by selenium through chromedriver) on a running
pipeline: frames update, the operator opens an alarm, calls the part good, and the part's next score falls below the
threshold. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import headless_chromium
from tests.integration.conftest import wait_for
from tests.integration.console.conftest import TOKEN, ConsoleRun

SCREENSHOT = Path("/tmp/console_screenshot.png")  # the last one, for a person to look at


@pytest.fixture
def browser() -> Iterator[object]:
    with headless_chromium() as driver:
        yield driver


def test_an_operator_teaches_a_flagged_part_in_the_browser(console_run: ConsoleRun, browser, tmp_path: Path
                                                           ) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def text(css: str) -> str:  # read in one script: the page redraws its figures with every update
        return browser.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : ''",
                                      css).strip()

    def src(css: str) -> str:
        return browser.execute_script("return document.querySelector(arguments[0]).src", css)

    def click(css: str) -> None:  # again if the page redrew the element between finding and clicking it
        def clicked() -> bool:
            try:
                browser.find_element(By.CSS_SELECTOR, css).click()
            except StaleElementReferenceException:
                return False
            return True

        wait_for(clicked, 10, f"a click on {css}")

    browser.get(console_run.url + "/")
    card = '.camera[data-camera="cam0"]'
    first = int(wait_for(lambda: text(f"{card} .frame-id"), 60, "the page to show camera cam0"))
    shown = src(f"{card} img")
    wait_for(lambda: int(text(f"{card} .frame-id") or 0) > first + 2, 30, "the page's frames to update")
    assert src(f"{card} img") != shown
    # Drawn: the page asks for the next frame only once the last one has loaded, so one always shows.
    wait_for(lambda: browser.execute_script(f"return document.querySelector('{card} img').naturalWidth") > 0, 10,
             "the camera's frame to be drawn")
    browser.save_screenshot(str(tmp_path / "1-live.png"))

    browser.find_element(By.ID, "token").send_keys(TOKEN, Keys.TAB)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".alarm"), 60, "an alarm in the list")
    click(".alarm")
    title = text("#alarm-title")
    assert title.startswith("cam0 frame ") and "against threshold" in title
    browser.save_screenshot(str(tmp_path / "2-alarm.png"))
    click("#mark-good")
    outcome = wait_for(lambda: browser.find_element(By.ID, "teach-result").get_attribute("data-outcome"), 30,
                       "the teaching's answer")
    assert outcome == "taught", text("#teach-result")
    threshold = float(text(f"{card} .threshold"))
    assert float(text("#score-after")) < threshold
    browser.save_screenshot(str(tmp_path / "3-taught.png"))
    click("#close-dialog")

    def part_scored_ok() -> bool:  # the folder camera shows the taught part again
        return text(f"{card} .source") == "a_part.png" and float(text(f"{card} .score")) < threshold

    wait_for(part_scored_ok, 30, "the taught part's next score on the page")
    assert "calibrate --model" in text(".recalibrate")
    browser.save_screenshot(str(tmp_path / "4-after.png"))
    shutil.copy(tmp_path / "4-after.png", SCREENSHOT)
