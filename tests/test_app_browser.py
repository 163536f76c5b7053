"""A real browser on the app: Debian's Chromium, headless, driven by Playwright.

Loads the page, uploads the character image and a clip of a real person, clicks "Preview poses"
and waits for the preview video. Screenshots are kept under artifacts/ (git-ignored). The page must
render offline: any request to a host other than the app's fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from test_app_server import REPO_ROOT, launch_app

CHROMIUM = Path(os.environ.get("STEADYDANCER_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture
def page(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def test_preview_poses_in_chromium(page, tmp_path, astronaut_path, person_clip, decode_calls):
    decodes = decode_calls  # the server runs in this process: every decode of the clip for the detector
    ARTIFACTS.mkdir(exist_ok=True)
    with launch_app(tmp_path) as (studio, _, url):
        origin = url.rstrip("/")
        foreign = []
        page.on("request", lambda r: foreign.append(r.url)
                if not r.url.startswith((origin, "data:", "blob:")) else None)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(url, wait_until="domcontentloaded")
        page.locator("#preview-btn").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app_empty.png"), full_page=True)

        # A photo is checked as soon as it arrives: one without a person says so before any click.
        nobody = tmp_path / "empty_wall.png"
        Image.new("RGB", (384, 512), (120, 160, 200)).save(nobody)
        page.locator("#character input[type=file]").set_input_files(str(nobody))
        page.get_by_text("No person found in the character image").first.wait_for(timeout=30_000)
        page.locator("#character button[aria-label='Remove Image']").first.click()

        page.locator("#character input[type=file]").set_input_files(str(astronaut_path))
        page.locator("#character img").first.wait_for(timeout=30_000)
        page.locator("#driving input[type=file]").set_input_files(str(person_clip))
        page.locator("#driving video").first.wait_for(timeout=30_000)
        # The clip is decoded as it arrives (its upload event), for the length on the page.
        for _ in range(300):
            sessions = studio.sessions.values()
            if sessions and sessions[0].runs["decode_on_arrival"]:
                break
            page.wait_for_timeout(100)
        assert sessions and len(decodes) == 1 and sessions[0].decoded is not None

        page.locator("#preview-btn").click()
        video = page.locator("#preview-video video").first
        video.wait_for(timeout=90_000)
        # The preview streams: its first second first, then the whole clip (24 frames at 16 fps).
        page.wait_for_function(
            "() => { const v = document.querySelector('#preview-video video');"
            " return v && v.src && v.readyState >= 1 && v.videoWidth > 0 && Math.abs(v.duration - 1.5) < 0.2; }",
            timeout=60_000)
        size = page.evaluate("() => { const v = document.querySelector('#preview-video video');"
                             " return [v.videoWidth, v.videoHeight, v.duration]; }")
        report = page.locator("#repair-report").inner_text()
        read_ahead = sessions[0].decoded is None and sessions[0].runs["extract"] == 1
        page.locator("#preview-video").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "app_preview.png"), full_page=True)

    assert read_ahead and len(decodes) == 1  # Preview read the frames decoded on arrival: no second decode
    assert size[0] > size[1] > 0  # three panels side by side
    assert abs(size[2] - 24 / 16) < 0.2  # the whole 24-frame clip (the default length is longer)
    assert "Motion" in report and "Repair" in report
    assert not foreign, f"the page fetched from other hosts: {foreign[:5]}"
    assert not errors, f"JavaScript errors: {errors[:3]}"
    assert (ARTIFACTS / "app_preview.png").stat().st_size > 10_000

