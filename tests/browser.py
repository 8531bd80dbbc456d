"""Debian's headless chromium driven by selenium through chromedriver, for the tests that look at a page: no browser
is downloaded, and chromium's own temporary files (its singleton socket folder, which it leaves behind) go to a folder
removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000")


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A selenium WebDriver of Debian's chromium; skips the test when chromium or chromium-driver is not installed."""
    chromium = shutil.which("chromium")
    if chromium is None or not CHROMEDRIVER.is_file():
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    # Short, under /tmp: the singleton socket's path must fit the 107 bytes of a unix socket's address.
    with tempfile.TemporaryDirectory(prefix="sa-chromium-") as scratch:
        service = Service(str(CHROMEDRIVER), env={**os.environ, "TMPDIR": scratch})
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()
