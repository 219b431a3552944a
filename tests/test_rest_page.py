"""The editing page in a real headless browser: Debian's chromium driven by Selenium through
chromium-driver (`.ci/run` installs both when missing), on `l2m demo` serving the shipped
models. Upload a photo, read the edit back, move the slider, check the page's edit is the REST
API's edit of the same crop, then a reference-guided edit with the reference dropped on the
page.

Set L2M_PAGE_SCREENSHOT=path.png to keep a screenshot of the page (docs/gallery's comes from it).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from test_rest import call, free_port, stop

# The page on `l2m demo`'s server (TF Serving's REST API), driven in a real browser.
pytestmark = [pytest.mark.needs_tensorflow, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run does it as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1000,1250", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    # An explicit driver: Selenium Manager never looks for (or downloads) one.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture(scope="module")
def page_url():
    port = free_port()
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "saved_models", "--port", str(port),
         "--no-open"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    seen, url = [], None
    deadline = time.monotonic() + 600  # a loaded shared machine loads models slowly
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("editing page: "):
            url = line.split(": ", 1)[1].strip()
    if url is None:
        process.kill()
        pytest.fail("l2m demo did not start:\n" + "".join(seen[-20:]))
    threading.Thread(target=process.stdout.read, daemon=True).start()
    assert url == f"http://127.0.0.1:{port}/"
    yield url, port
    stop(process)


def _canvas(driver, element_id: str) -> np.ndarray:
    from PIL import Image

    data = driver.execute_script(
        f"return document.getElementById('{element_id}').toDataURL('image/png');")
    png = base64.b64decode(data.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _wait_done(driver, alpha: str | None = None, timeout: float = 120) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d):
        state = d.execute_script("const a = document.getElementById('after');"
                                 "return [a.dataset.state, a.dataset.alpha || ''];")
        if state[0] == "error":
            raise AssertionError(d.find_element("id", "status").text)
        return state[0] == "done" and (alpha is None or state[1] == alpha)

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(done)


def _photo(path: Path, index: int, size: int = 256) -> Path:
    from PIL import Image

    from keras_l2mgan.metrics import synthetic

    params = synthetic.split_params("test", index + 1)[index:]
    Image.fromarray(synthetic.render(params, size)[0]).save(path)
    return path


def test_page_edits_in_a_real_browser(page_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, port = page_url
    driver = _browser()
    try:
        driver.get(url)
        WebDriverWait(driver, 60).until(
            lambda d: "Model smiling" in d.find_element(By.ID, "status").text)
        assert [o.text for o in Select(driver.find_element(By.ID, "model")).options] == \
            ["smiling", "smiling_male"]
        photo = _photo(tmp_path / "face.png", 0)
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        _wait_done(driver, "1")
        before, after = _canvas(driver, "before"), _canvas(driver, "after")
        assert before.shape == after.shape == (64, 64, 3)
        # The shipped smiling model blends its edit into the input, so only the mouth changes:
        # count the pixels the edit moved by more than 16 grey levels.
        moved = (np.abs(after.astype(int) - before).max(axis=-1) > 16).sum()
        assert moved >= 20, f"the edit changed nothing (only {moved} pixels moved)"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#strip canvas")) == 6
        assert driver.find_element(By.ID, "download").get_attribute("href").startswith(
            "data:image/png;base64,")

        # The slider: ten steps of 0.05 down to alpha 0.5.
        slider = driver.find_element(By.ID, "alpha")
        for _ in range(10):
            slider.send_keys(Keys.ARROW_LEFT)
        _wait_done(driver, "0.5")
        assert driver.find_element(By.ID, "alpha-value").text == "0.50"
        half = _canvas(driver, "after")
        # The edit is local (a mouth: a few % of the pixels), so count moved pixels, as above.
        differ = (np.abs(half.astype(int) - after).max(axis=-1) > 16).sum()
        assert differ >= 10, f"alpha 0.5 looks like alpha 1 (only {differ} pixels differ)"
        # The page shows exactly what the REST API answers for its crop.
        status, answer, _ = call(port, "POST", "/v1/models/smiling:predict",
                                 {"signature_name": "guess_domain", "instances": [before.tolist()]})
        source = answer["predictions"][0]["source_domain"]
        status, answer, _ = call(port, "POST", "/v1/models/smiling:predict", {"instances": [
            {"images": before.tolist(), "source_domain": source, "target_domain": 1 - source,
             "alpha": 0.5}]})
        assert status == 200
        # Within one grey level: the page sends seven alphas in one batch, this request one.
        assert np.abs(half.astype(int) - np.asarray(answer["predictions"][0])).max() <= 1

        # Reference-guided: the reference dropped onto the page (a DataTransfer drop event).
        driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="like"]').click()
        reference = _photo(tmp_path / "reference.png", 3)
        driver.execute_script("""
            const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], 'reference.png', {type: 'image/png'}));
            document.getElementById('reference-drop').dispatchEvent(
              new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        """, base64.b64encode(reference.read_bytes()).decode())
        WebDriverWait(driver, 120).until(
            lambda d: "like the reference" in d.find_element(By.ID, "after-caption").text)
        _wait_done(driver, "0.5")
        liked = _canvas(driver, "after")
        assert liked.shape == (64, 64, 3)
        # The page shows what the edit_like signature answers for its two crops (within one grey
        # level, as above), and that answer is an edit: at alpha 0.5 a blended reference-guided
        # edit is faint (15 pixels moved by more than 4 grey levels on the shipped smiling of
        # 2026-12-04), so only a few moved pixels are asked for.
        reference_crop = _canvas(driver, "reference-view")
        status, answer, _ = call(port, "POST", "/v1/models/smiling:predict", {
            "signature_name": "edit_like", "instances": [
                {"images": before.tolist(), "reference": reference_crop.tolist(),
                 "source_domain": source, "reference_domain": -1, "alpha": 0.5}]})
        assert status == 200
        expected = np.asarray(answer["predictions"][0]["images"])
        assert np.abs(liked.astype(int) - expected).max() <= 1
        changed = (np.abs(liked.astype(int) - before).max(axis=-1) > 4).sum()
        assert changed >= 5, f"the reference-guided edit changed only {changed} pixels"
        assert "error" not in driver.find_element(By.ID, "status").get_attribute("class")

        # Back to attributes at alpha 1 for the screenshot.
        driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="attributes"]').click()
        for _ in range(10):
            slider.send_keys(Keys.ARROW_RIGHT)
        _wait_done(driver, "1")
        screenshot = os.environ.get("L2M_PAGE_SCREENSHOT")
        if screenshot:
            driver.save_screenshot(screenshot)
    finally:
        driver.quit()
