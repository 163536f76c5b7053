"""`python -m steadydancer generate` end to end on CPU: pose path + the tiny saved pipeline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from steadydancer.video import probe_video
from tiny_pipeline import shared_tiny_pipeline_path


def run_cli(*args, env_extra=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "steadydancer", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_generate_from_a_video_and_from_saved_poses(tmp_path, astronaut_path, person_clip):
    model = shared_tiny_pipeline_path()
    out = tmp_path / "video.mp4"
    common = ["--image", astronaut_path, "--model", model, "--device", "cpu", "--offline",
              "--frames", 9, "--steps", 2, "--max-area", 64 * 64, "--seed", 5]
    proc = run_cli("generate", "--video", person_clip, "--out", out, *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = probe_video(out, count_frames=True)
    assert info.num_frames == 9 and info.codec == "h264" and (info.width, info.height) == (64, 64)
    assert "Denoising" in proc.stderr and "Decoding" in proc.stderr

    # The same motion from a saved poses.json (no detector run) gives the same video.
    pose_dir = tmp_path / "poses"
    assert run_cli("pose", "--image", astronaut_path, "--video", person_clip, "--out", pose_dir).returncode == 0
    out2 = tmp_path / "from_poses.mp4"
    proc = run_cli("generate", "--video", pose_dir / "poses.json", "--out", out2, *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert probe_video(out2, count_frames=True).num_frames == 9


def test_generate_without_weights_says_what_to_download(tmp_path, astronaut_path, person_clip):
    proc = run_cli("generate", "--image", astronaut_path, "--video", person_clip, "--out", tmp_path / "v.mp4",
                   "--model", tmp_path / "no-such-model", "--offline", "--device", "cpu")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.index("error: "):]
    assert "weights are missing" in message and "no-such-model" in message
    assert "hf download MCG-NJU/SteadyDancer-14B" in message  # says exactly what to fetch
    assert not (tmp_path / "v.mp4").exists()


def test_generate_refuses_a_non_mp4_output(tmp_path, astronaut_path, person_clip):
    proc = run_cli("generate", "--image", astronaut_path, "--video", person_clip, "--out", tmp_path / "v.gif")
    assert proc.returncode == 2 and "must be an .mp4" in proc.stderr


@pytest.mark.slow
def test_generate_official_frame_rate_and_conditioning_options(tmp_path, astronaut_path):
    """--frame-rate official keeps every native frame of a 30 fps clip and plays the video at 16 fps
    (and says so); --conditioning and --noise-device reach the generation."""
    from conftest import make_person_frames, write_clip

    clip = write_clip(tmp_path / "clip30.mp4", make_person_frames(24), fps=30)
    common = ["--image", astronaut_path, "--video", clip, "--model", shared_tiny_pipeline_path(), "--device", "cpu",
              "--offline", "--frames", 9, "--steps", 1, "--max-area", 64 * 64, "--noise-device", "cpu"]
    out = tmp_path / "official.mp4"
    proc = run_cli("generate", "--out", out, "--frame-rate", "official", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Frame rate: official -- every native frame of the 30 fps clip, played at 16 fps (0.53x speed" in proc.stdout
    info = probe_video(out, count_frames=True)
    assert info.num_frames == 9 and info.fps == pytest.approx(16) and not info.has_audio

    out = tmp_path / "realtime.mp4"
    proc = run_cli("generate", "--out", out, "--conditioning", "clean", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Frame rate: real time -- the motion resampled to 16 fps (1.00x speed)" in proc.stdout


def test_official_frame_rate_and_fps_are_exclusive(tmp_path, astronaut_path, capsys):
    from steadydancer.cli import main

    status = main(["pose", "--image", str(astronaut_path), "--video", "clip.mp4", "--out", str(tmp_path),
                   "--frame-rate", "official", "--fps", "24"])
    assert status == 2 and "do not give --fps" in capsys.readouterr().err
