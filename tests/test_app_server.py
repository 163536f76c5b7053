"""The app as a server: launched on 127.0.0.1 and driven with gradio_client, as an API user would.

`/preview_poses` runs on a clip of a real person made by the test; `/generate` runs the tiny saved
pipeline on CPU through the same code path a GPU run takes; errors arrive as Gradio errors with
readable messages. `launch_app` is shared with the browser test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_SSR_MODE", "False")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: The tiny test pipeline works on 32-px multiples; this resolution class keeps it tiny.
TINY_RESOLUTION = ("tiny", 64 * 64, 3.0)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launch_app(tmp_path: Path, model: str | Path | None = None, **launch_overrides):
    """Launch the app's Blocks on 127.0.0.1 (a free port) with its own configuration and temp folders;
    yields (studio, demo, url) and closes the server afterwards."""
    os.environ["GRADIO_TEMP_DIR"] = str(tmp_path / "gradio")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(tmp_path / "examples-cache")
    from studio import AppConfig, Studio, create_demo, launch_kwargs

    config = AppConfig.from_env().replace(
        model=str(model) if model else str(tmp_path / "no-weights-here"), offline=True, device="cpu",
        tmp_root=tmp_path / "sessions", zero_gpu=False).with_resolutions({TINY_RESOLUTION[0]: TINY_RESOLUTION[1:]})
    studio = Studio(config)
    demo = create_demo(studio)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_kwargs(studio, **launch_overrides))
    try:
        yield studio, demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close(verbose=False)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.tiny_pipeline import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    with launch_app(tmp_path_factory.mktemp("server"), model=tiny_model) as launched:
        yield launched


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    _, _, url = server
    return Client(url, verbose=False, analytics_enabled=False,
                  download_files=str(Path(server[0].config.tmp_root).parent / "client-downloads"))


POSE_DEFAULTS = dict(motion="", num_frames=17, smooth=0.3, repair=True, align_mode="robust", alignment_frame=-1,
                     lead_in_frames=0)


def test_named_endpoints_are_documented(client):
    api = client.view_api(print_info=False, return_format="dict")
    named = api["named_endpoints"]
    assert set(named) >= {"/preview_poses", "/generate"}
    params = [p["parameter_name"] for p in named["/preview_poses"]["parameters"]]
    assert params == ["image", "driving_video", "motion", "num_frames", "smooth", "repair", "align_mode",
                      "alignment_frame", "lead_in_frames", "frame_rate"]
    gen_params = [p["parameter_name"] for p in named["/generate"]["parameters"]]
    assert gen_params[:3] == ["image", "driving_video", "motion"] and "seed" in gen_params
    assert gen_params[-3:] == ["frame_rate", "conditioning", "noise_device"]
    defaults = {p["parameter_name"]: p.get("parameter_default") for p in named["/generate"]["parameters"]}
    assert (defaults["frame_rate"], defaults["conditioning"], defaults["noise_device"]) == ("realtime", "official", "auto")
    assert "session" not in params + gen_params  # state stays on the server
    # Helper events (estimate, refresh, tab switches) are not part of the public API.
    assert not any(name.startswith("/lambda") or "refresh" in name for name in named)


def test_preview_poses_over_http(client, astronaut_path, person_clip):
    from gradio_client import handle_file

    from steadydancer.video import probe_video

    job = client.submit(image=handle_file(str(astronaut_path)), driving_video=handle_file(str(person_clip)),
                        **POSE_DEFAULTS, api_name="/preview_poses")
    preview, pose, report, poses = job.result()
    # It streams: first the preview's first second (no pose video yet), then everything.
    early, final = job.outputs()
    early_path = Path(early[0]["video"] if isinstance(early[0], dict) else early[0])
    assert probe_video(early_path, count_frames=True).num_frames == 16 and early[1] is None
    assert final[2] == report and early[2] == report
    preview_path = Path(preview["video"] if isinstance(preview, dict) else preview)
    pose_path = Path(pose["video"] if isinstance(pose, dict) else pose)
    info = probe_video(preview_path, count_frames=True)
    assert info.num_frames == 17  # 17 frames at 16 fps from a 24-frame clip
    assert info.width > info.height  # three panels side by side
    assert probe_video(pose_path, count_frames=True).num_frames == 17
    assert "Motion" in report and "17 frames" in report
    assert Path(poses).name == "poses.json" and Path(poses).stat().st_size > 100


def test_generate_with_tiny_pipeline_over_http(client, astronaut_path, person_clip):
    from gradio_client import handle_file

    from steadydancer.video import probe_video

    video, comparison, seed, settings = client.predict(
        image=handle_file(str(astronaut_path)), driving_video=handle_file(str(person_clip)),
        motion="", prompt="a person dancing", negative_prompt="", resolution="tiny", num_frames=5, num_inference_steps=2,
        guidance_scale=5.0, condition_guidance_scale=1.0, condition_window_start=0.1, condition_window_end=0.4,
        shift=3.0, seed=123, randomize_seed=False, preset="quality", smooth=0.3, repair=True,
        align_mode="robust", alignment_frame=-1, lead_in_frames=0, api_name="/generate")
    result = probe_video(Path(video["video"] if isinstance(video, dict) else video), count_frames=True)
    assert result.num_frames == 5 and (result.width, result.height) == (64, 64)
    comp = probe_video(Path(comparison["video"] if isinstance(comparison, dict) else comparison), count_frames=True)
    assert comp.num_frames == 5 and comp.width > comp.height
    assert seed == 123
    assert settings["seed"] == 123 and settings["num_frames"] == 5 and settings["num_inference_steps"] == 2
    assert (settings["width"], settings["height"]) == (64, 64) and settings["device"] == "cpu"


def test_errors_arrive_as_readable_gradio_errors(client, astronaut_path, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n" * 20)
    with pytest.raises(AppError, match="Could not read video notes.mp4"):
        client.predict(image=handle_file(str(astronaut_path)), driving_video=handle_file(str(fake)),
                       **POSE_DEFAULTS, api_name="/preview_poses")

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(AppError, match="could not be read as an image"):
        client.predict(image=handle_file(str(broken)), driving_video=None, **POSE_DEFAULTS,
                       api_name="/preview_poses")

    with pytest.raises(AppError, match="driving_video: add a driving video"):
        client.predict(image=handle_file(str(astronaut_path)), driving_video=None, **POSE_DEFAULTS,
                       api_name="/preview_poses")


def test_generate_without_weights_says_what_is_missing(tmp_path, astronaut_path, person_clip):
    """A server whose model folder does not exist: the preview works, Generate explains."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    with launch_app(tmp_path) as (app, _, url):
        c = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))
        with pytest.raises(AppError, match="weights are missing"):
            c.predict(image=handle_file(str(astronaut_path)), driving_video=handle_file(str(person_clip)),
                      motion="", prompt="", negative_prompt="", resolution="480p", num_frames=17, num_inference_steps=4,
                      guidance_scale=5.0, condition_guidance_scale=1.0, condition_window_start=0.1,
                      condition_window_end=0.4, shift=3.0, seed=1, randomize_seed=False, preset="quality",
                      smooth=0.3, repair=True, align_mode="robust", alignment_frame=-1, lead_in_frames=0,
                      api_name="/generate")


def test_uploads_over_the_size_limit_are_refused(tmp_path, astronaut_path, person_clip):
    """The same launch settings with a tiny limit: Gradio refuses the upload with a clear message."""
    from gradio_client import Client, handle_file

    from steadydancer.settings import MAX_UPLOAD_SIZE
    from studio import launch_kwargs

    assert launch_kwargs()["max_file_size"] == MAX_UPLOAD_SIZE
    with launch_app(tmp_path, max_file_size="10kb") as (_, _, url):
        c = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))
        with pytest.raises(Exception, match="(?i)file size|too large|exceed"):
            c.predict(image=handle_file(str(astronaut_path)), driving_video=handle_file(str(person_clip)),
                      **POSE_DEFAULTS, api_name="/preview_poses")


def test_queue_is_bounded_and_generation_runs_one_at_a_time(server):
    _, demo, _ = server
    from studio.config import QUEUE_MAX_SIZE

    assert demo._queue.max_size == QUEUE_MAX_SIZE
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert fns["generate"].concurrency_limit == 1 and fns["generate"].concurrency_id == "gpu"
    assert fns["preview_poses"].concurrency_limit == 2 and fns["preview_poses"].concurrency_id == "cpu"


@pytest.mark.parametrize("variable", ["STEADYDANCER_RENDER_HELPERS", "STEADYDANCER_MAX_SESSIONS"])
def test_a_bad_setting_stops_the_app_with_one_line(variable, tmp_path):
    """`python app.py` with a setting that is not a number: one `error:` line naming it, exit
    status 2, no traceback (the user-error policy of the command line)."""
    import subprocess

    env = {**os.environ, variable: "lots", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "app.py"), "--port", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "'lots'" in line and ("STEADYDANCER_RENDER_HELPERS" in line or "max_sessions" in line)
