"""Debian's headless Chromium driven by Selenium through /usr/bin/chromedriver (never a
downloaded driver; `deploy/local/chromium.sh install` puts both there).

`python -m tests.support.browser PAGE.html OUT.png [WIDTH HEIGHT]` takes a full-page
screenshot of a local file (the README's backtest report picture).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a throw-away profile; quit afterwards."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="gds-chromium-") as profile:
        for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            opts.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 900) -> None:
    """The whole page as PNG: the window is grown to the document's height first."""
    with chromium(width, height) as driver:
        driver.get(page.resolve().as_uri())
        full = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(width, min(max(height, full + 120), 8000))
        driver.save_screenshot(str(out))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 4):
        raise SystemExit("usage: python -m tests.support.browser PAGE.html OUT.png [WIDTH HEIGHT]")
    size = (int(args[2]), int(args[3])) if len(args) == 4 else (1200, 900)
    screenshot(Path(args[0]), Path(args[1]), *size)
