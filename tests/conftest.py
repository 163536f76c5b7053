"""Shared test fixtures: paths, the optional real media, and a driving clip with a real person."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a model hub
# No render helper process unless a test starts one (tests/test_pose_helper.py): the pose videos
# are then drawn by this process's threads in every other test, so a test that patches the
# drawing here sees its patch used; the helper writes the same bytes (checked there).
os.environ["STEADYDANCER_RENDER_HELPERS"] = "0"

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
SHARED_MEDIA = REPO_ROOT.parent / "shared" / "media"


# A standing person facing the camera, in units of image height (x, y); "right" is the person's
# right, i.e. the image's left. Shared by the alignment and repair tests.
STANDING = {
    "nose": (0.50, 0.20), "neck": (0.50, 0.30),
    "right_shoulder": (0.42, 0.30), "right_elbow": (0.39, 0.42), "right_wrist": (0.37, 0.52),
    "left_shoulder": (0.58, 0.30), "left_elbow": (0.61, 0.42), "left_wrist": (0.63, 0.52),
    "right_hip": (0.45, 0.55), "right_knee": (0.44, 0.71), "right_ankle": (0.44, 0.86),
    "left_hip": (0.55, 0.55), "left_knee": (0.56, 0.71), "left_ankle": (0.56, 0.86),
    "right_eye": (0.48, 0.18), "left_eye": (0.52, 0.18), "right_ear": (0.46, 0.19),
    "left_ear": (0.54, 0.19),
}


def run_python(code: str, timeout: float = 300) -> list[str]:
    """``code`` run by a new interpreter from the repository root (a fresh process: nothing this
    one imported); the lines it printed. Fails the test with its stderr if it exits non-zero."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    return EXAMPLES / "astronaut.png"


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """../shared/media (academic-use media, never committed); skips when it is not there."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"real media not available: {SHARED_MEDIA} does not exist (it is never committed)")
    return SHARED_MEDIA


def make_person_frames(num_frames: int = 16, size: tuple[int, int] = (320, 384)) -> list[np.ndarray]:
    """Frames of the astronaut photo swaying and bobbing on a grey stage: a real person that
    mediapipe detects, moving by a known amount (x offset = 24 px * sin)."""
    from PIL import Image

    width, height = size
    person = Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((256, 256), Image.BICUBIC)
    person = np.asarray(person)
    frames = []
    for t in range(num_frames):
        canvas = np.full((height, width, 3), 110, np.uint8)
        dx = int(round(24 * np.sin(2 * np.pi * t / max(num_frames, 2))))
        dy = int(round(6 * np.cos(2 * np.pi * t / max(num_frames, 2))))
        x0 = (width - 256) // 2 + dx
        y0 = (height - 256) // 2 + dy
        canvas[y0:y0 + 256, x0:x0 + 256] = person
        frames.append(canvas)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", quality=None,
                                         output_params=["-crf", "18"], macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


@pytest.fixture(scope="session")
def person_clip(tmp_path_factory) -> Path:
    """A 1.5 s, 16 fps H.264 clip (320x384) of a real person moving side to side."""
    path = tmp_path_factory.mktemp("clips") / "person.mp4"
    return write_clip(path, make_person_frames(24), fps=16)


@pytest.fixture
def decode_calls(monkeypatch) -> list:
    """The keyword arguments of every call of ``extract.detection_frames`` (the extractor's decode
    of a clip for the detector) made during the test, in order."""
    from steadydancer.pose import extract

    calls: list = []
    real = extract.detection_frames
    monkeypatch.setattr(extract, "detection_frames", lambda *a, **k: calls.append(k) or real(*a, **k))
    return calls


def assert_same_poses(a, b) -> None:
    """Two pose sequences with the same frames, every part bit for bit (NaN for missing points)."""
    for x, y in zip(a, b, strict=True):
        for part in ("body", "hands", "face"):
            np.testing.assert_array_equal(getattr(x, part), getattr(y, part))
