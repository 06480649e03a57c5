"""Driving the app in a headless Chromium (Selenium): shared by ``tests/test_browser.py`` and
``bench/app_performance.py``. Not used by the app itself.

The app draws an invisible ``.bv-run-done[data-run=N]`` element at the end of every run
(:func:`brainviz.app_support.state.run_marker`); :func:`wait_run` waits for a run number larger
than the last one seen and for Streamlit's loading skeletons to disappear.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
CHROME_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def find_browser() -> tuple[str | None, str | None]:
    """``(chromium binary, chromedriver)`` found on PATH (either may be None)."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    return browser, driver


def install_browser(log=print) -> bool:
    """``apt-get install chromium chromium-driver`` when running as root with apt; True if a
    browser and driver are available afterwards."""
    browser, driver = find_browser()
    if browser and driver:
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        log("installing chromium + chromium-driver with apt-get (once)…")
        subprocess.run(["apt-get", "update"], check=False, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
                       check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    except (OSError, subprocess.TimeoutExpired):
        return False
    browser, driver = find_browser()
    return bool(browser and driver)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(env: dict[str, str], port: int | None = None, log_path: Path | None = None,
           timeout: float = 120.0) -> Iterator[str]:
    """Run ``streamlit run app.py`` on 127.0.0.1 and yield its base URL; stop it afterwards."""
    import urllib.request

    port = port or free_port()
    log = open(log_path or os.devnull, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=str(REPO), env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode} (log: {log_path})")
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start in time")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def driver(width: int = 1400, height: int = 1000, network_log: bool = False):
    """A headless Chromium WebDriver with a fresh profile (``network_log``: record the
    DevTools performance log, read by :func:`requested_urls`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = find_browser()
    opts = webdriver.ChromeOptions()
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--window-size={width},{height}")
    profile = tempfile.mkdtemp(prefix="bv-chrome-")
    opts.add_argument("--user-data-dir=" + profile)
    if browser:
        opts.binary_location = browser
    if network_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        d = webdriver.Chrome(service=Service(chromedriver) if chromedriver else Service(), options=opts)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    quit_browser = d.quit

    def quit_and_remove_profile() -> None:  # a profile is ~30 MB: hundreds of test runs filled /tmp
        try:
            quit_browser()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    d.quit = quit_and_remove_profile
    return d


def requested_urls(d) -> list[str]:
    """URLs the browser requested since the last call (needs ``driver(network_log=True)``),
    including those of iframes and web sockets."""
    import json

    urls = []
    for entry in d.get_log("performance"):
        try:
            msg = json.loads(entry["message"])["message"]
        except (KeyError, ValueError):
            continue
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
        elif msg.get("method") == "Network.webSocketCreated":
            urls.append(msg["params"]["url"])
    return urls


def external(urls, host: str = "127.0.0.1") -> list[str]:
    """The URLs that leave the machine (not ``host``/localhost, ``data:``, ``blob:``, ``about:``)."""
    local = (f"http://{host}", f"ws://{host}", "http://localhost", "ws://localhost", "data:", "blob:", "about:",
             "chrome:", "devtools:")
    return [u for u in urls if not u.startswith(local)]


def last_run(d) -> int:
    return int(d.execute_script(
        "return Math.max(0, ...Array.from(document.querySelectorAll('.bv-run-done'))"
        ".map(e => parseInt(e.getAttribute('data-run') || '0')));") or 0)


def wait_run(d, after: int = 0, timeout: float = 120.0, skeletons: bool = True) -> int:
    """Wait until the session finished a run numbered above ``after`` and nothing is loading."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = last_run(d)
        if n > after:
            if not skeletons or not d.execute_script(
                    "return document.querySelectorAll('[data-testid=\"stSkeleton\"]').length"):
                return n
        time.sleep(0.05)
    raise TimeoutError(f"no finished run after #{after} within {timeout:.0f} s ({d.current_url})")


def exceptions(d) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in d.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')]


def click_nav(d, title: str) -> None:
    """Click the sidebar navigation link whose text is ``title``."""
    from selenium.webdriver.common.by import By

    for link in d.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"]'):
        if link.text.strip().splitlines()[-1:] == [title]:
            link.click()
            return
    raise LookupError(f"no navigation link {title!r}")


def click_button(d, label: str) -> None:
    from selenium.webdriver.common.by import By

    for b in d.find_elements(By.CSS_SELECTOR, '[data-testid^="stBaseButton"]'):
        if b.text.strip() == label:
            d.execute_script("arguments[0].scrollIntoView({block: 'center'});", b)
            b.click()
            return
    raise LookupError(f"no button {label!r}")


def wait_for(d, css: str, timeout: float = 60.0):
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = d.find_elements(By.CSS_SELECTOR, css)
        if found:
            return found
        time.sleep(0.05)
    raise TimeoutError(f"{css} did not appear within {timeout:.0f} s")
