"""A page served on loopback and a headless Chromium to drive it, for the annotation page's browser
test and its screenshot (``docs/annotation_page_screenshot.py``).

Chromium and ChromeDriver are Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs
them); nothing is downloaded. The flags keep Chromium off the network: it makes no connection of its own.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync")


def missing_browser() -> str | None:
    """Why no browser can be driven here, or ``None``."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "no chromium / chromedriver on PATH: `make test` installs Debian's chromium and chromium-driver (apt-get failed or was not run)"
    return None


@contextmanager
def serving(make_app: Callable[[str], object]) -> Iterator[str]:
    """The app ``make_app(address)`` returns, served by uvicorn at that address (a free loopback
    port) in a thread; yields the address."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(make_app(address), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield address
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def headless_chromium(width: int = 1100, height: int = 760) -> Iterator:
    """A Selenium driver of Debian's headless Chromium with a fresh profile, its viewport ``width``
    by ``height`` CSS pixels (under 500 wide, a phone's, emulated)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        if width < 500:  # narrower than a headless window can be: a phone's viewport, emulated
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(driver, condition, timeout: float = 10.0) -> None:
    """Poll ``condition(driver)`` until true; ``AssertionError`` with the page's progress line after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition(driver):
        if time.monotonic() > end:
            raise AssertionError(f"timed out; the page says {driver.find_element('id', 'progress').text!r}")
        time.sleep(0.05)
