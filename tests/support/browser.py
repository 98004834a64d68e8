"""A real browser for the tests: Debian's headless Chromium, driven by Selenium.

Selenium is given the browser and its driver from Debian's packages
(``apt-get install chromium chromium-driver``), so it downloads nothing.
Without them the test is skipped, except with CI=true, where it fails.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.support import waiting

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextmanager
def headless_chromium(width: int = 1440, height: int = 900) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        reason = f"no {' or '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # Root, as on CI, has no user namespace sandbox.
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    # The console, to find stylesheets or scripts the page's CSP refused.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until[T](condition: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """``condition()``'s first truthy value, while the page may still be loading."""

    def on_the_page() -> T | None:
        try:
            return condition()
        except NoSuchElementException:
            return None  # Not on the page yet: the page is still loading.

    return waiting.wait_until(on_the_page, what, timeout)
