"""The pages in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromium-driver (`make browser` installs both; skipped with the reason when absent).

GEN3D_SCREENSHOT_DIR=docs keeps the screenshots (docs/ui_try_it.png, docs/ui_docs.png).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gen3d.serve.ui.assets import MISSING_VIEWER, viewer_installed

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", shutil.which("chromium"))
        if p and os.access(p, os.X_OK)
    ),
    None,
)
CHROMEDRIVER = shutil.which("chromedriver")
ROUTES = ["/ping", "/execution-parameters", "/invocations"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed; `make browser` "
            "(apt-get install chromium chromium-driver, as root) installs them"
        )
    if not viewer_installed():
        pytest.skip(MISSING_VIEWER)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: chromium refuses to run as root with its sandbox (CI runs as root).
    # --enable-unsafe-swiftshader: WebGL on the CPU (no GPU here), explicitly opted into.
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--window-size=1280,900",
        "--enable-unsafe-swiftshader",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory, server_stopper) -> Iterator:
    from gen3d.serve.local_server import start_server

    server = start_server(
        env={"GEN3D_UI": "1"}, log_path=tmp_path_factory.mktemp("ui") / "server.log"
    )
    server.wait_ready(60)
    yield server
    server_stopper.stop(server)


def wait_for(driver, script: str, timeout_s: float = 90.0):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script("return " + script)
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{script} stayed falsy for {timeout_s:.0f} s")


def drawn(driver, frames: int = 2) -> None:
    """Wait for the page to draw `frames` more animation frames (the model viewer draws
    on each): the model is on screen in the next screenshot, with no fixed sleep."""
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; let left = arguments[0];"
        "const tick = () => (--left <= 0 ? done(true) : requestAnimationFrame(tick));"
        "requestAnimationFrame(tick);",
        frames,
    )


def keep(image: Image.Image, name: str) -> None:
    folder = os.environ.get("GEN3D_SCREENSHOT_DIR")
    if folder:
        image.save(Path(folder) / name)


def submit(
    driver, url: str, image: Path, mask: Path | None, fmt: str = "glb", options: str = ""
) -> str:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    driver.find_element(By.ID, "image").send_keys(str(image))
    if mask is not None:
        driver.find_element(By.ID, "mask").send_keys(str(mask))
    if options:
        driver.find_element(By.ID, "options").send_keys(options)
    driver.execute_script(f"document.getElementById('format').value = '{fmt}'")
    driver.find_element(By.ID, "submit").click()
    return wait_for(
        driver,
        "['loaded', 'error'].includes(document.getElementById('viewer').dataset.state)"
        " && document.getElementById('viewer').dataset.state",
    )


def viewer_pixels(driver) -> np.ndarray:
    from selenium.webdriver.common.by import By

    png = driver.find_element(By.ID, "viewer").screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def coffee_colours(pixels: np.ndarray) -> tuple[float, float]:
    """(share of pixels off the white background, share in the saucer's red-orange)."""
    off_white = (pixels < 235).any(axis=-1)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    red_orange = (r > 120) & (r > g + 50) & (g > b - 10)
    return float(off_white.mean()), float(red_orange.mean())


def test_try_it_page_shows_the_coffee_cup_in_the_viewer(browser, ui_server) -> None:
    from selenium.webdriver.common.by import By

    state = submit(browser, ui_server.url, SAMPLES / "coffee.png", SAMPLES / "coffee_mask.png")
    assert state == "loaded", browser.find_element(By.ID, "error").text
    wait_for(browser, "document.getElementById('viewer').modelIsVisible")
    drawn(browser)  # one more frame after the model is first drawn
    pixels = viewer_pixels(browser)
    covered, saucer = coffee_colours(pixels)
    assert covered > 0.10, f"viewer nearly blank: {covered:.1%} of pixels off the background"
    assert saucer > 0.02, f"the saucer's red-orange covers only {saucer:.1%}"
    metadata = browser.find_element(By.ID, "metadata").text
    assert "faces" in metadata and "round trip (ms)" in metadata
    download = browser.find_element(By.ID, "download")
    assert download.get_attribute("download") == "coffee_3d.glb"
    keep(Image.open(io.BytesIO(browser.get_screenshot_as_png())), "ui_try_it.png")


def test_a_splat_result_is_shown_as_coloured_markers(browser, ui_server) -> None:
    state = submit(
        browser, ui_server.url, SAMPLES / "coffee.png", SAMPLES / "coffee_mask.png", "ply"
    )
    assert state == "loaded"
    wait_for(browser, "document.getElementById('viewer').modelIsVisible")
    drawn(browser)
    covered, saucer = coffee_colours(viewer_pixels(browser))
    assert covered > 0.10 and saucer > 0.01


def test_the_server_message_is_shown_when_the_mask_is_missing(browser, ui_server) -> None:
    from selenium.webdriver.common.by import By

    # coffee.png is RGB: no alpha to stand in for the mask; mask=required turns the
    # server's automatic mask off, so the server refuses it.
    state = submit(
        browser, ui_server.url, SAMPLES / "coffee.png", None, options='{"mask": "required"}'
    )
    assert state == "error"
    error = browser.find_element(By.ID, "error").text
    assert error.startswith("a mask is required") and "[unprocessable, HTTP 422]" in error
    assert "Traceback" not in error


def test_docs_list_the_three_routes(browser, ui_server) -> None:
    from selenium.webdriver.common.by import By

    browser.get(ui_server.url + "/docs/")
    wait_for(browser, "document.querySelectorAll('.opblock-summary-path').length >= 3")
    paths = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")]
    assert paths == ROUTES
    keep(Image.open(io.BytesIO(browser.get_screenshot_as_png())), "ui_docs.png")


def test_gen3d_view_serves_and_writes_a_file_that_opens_offline(browser, tmp_path) -> None:
    # A result file from the silhouette backend, made in-process (no server needed).
    from gen3d.serve.backends.base import Sample
    from gen3d.serve.backends.silhouette import SilhouetteBackend
    from gen3d.serve.outputs.encoding import encode_asset

    photo = np.asarray(Image.open(SAMPLES / "coffee.png").convert("RGB"))
    mask = np.asarray(Image.open(SAMPLES / "coffee_mask.png").convert("L")) > 127
    (asset,) = SilhouetteBackend().predict([Sample(image=photo, mask=mask, seed=0, format="obj")])
    obj = tmp_path / "coffee.obj"
    obj.write_bytes(encode_asset(asset, "obj"))
    cli = [sys.executable, "-m", "gen3d.cli", "view", str(obj)]
    html = tmp_path / "coffee.html"
    served = subprocess.Popen([*cli, "--no-browser"], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        # the file is written while the server starts: two interpreters' start-up at once
        done = subprocess.run(
            [*cli, "--html", str(html)], capture_output=True, text=True, cwd=REPO, timeout=120
        )
        assert done.returncode == 0, done.stderr
        line = served.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        for address in (url, html.as_uri()):
            browser.get(address)
            state = wait_for(browser, "document.getElementById('viewer').dataset.state")
            assert state == "loaded", address
            wait_for(browser, "document.getElementById('viewer').modelIsVisible")
            drawn(browser)
            covered, saucer = coffee_colours(viewer_pixels(browser))
            assert covered > 0.10 and saucer > 0.02, address
    finally:
        served.send_signal(signal.SIGINT)
        assert served.wait(timeout=10) == 0
