"""The app under load, as a hostile-but-fair client sees it: a real server process (``python app.py``)
on 127.0.0.1, driven with gradio_client and raw HTTP, its memory and CPU read from /proc.

The server runs with small limits so the test is short (3 sessions at once, 6 s idle time, a sweep
every 0.5 s, a heartbeat every 0.5 s: Gradio notices a closed tab at its next heartbeat) and with its session root outside both its system temp folder and
its working directory (``STEADYDANCER_APP_TMP``, as on a Space with a persistent disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's /proc entries")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import make_person_frames, write_clip  # noqa: E402

MAX_SESSIONS = 3
IDLE_SECONDS = 6.0
#: What one session may add to the server's memory (the working-size photo is 7 MB; poses, the
#: preview's buffers and the allocator's slack the rest) -- the bound the README states.
SESSION_MEMORY_BOUND_MB = 40
POSE = dict(num_frames=17, smooth=0.3, repair=True, align_mode="auto", alignment_frame=-1, lead_in_frames=0)


# ---------------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pid: int, timeout: float, window: float = 0.5, busy: float = 0.15) -> float | None:
    """Seconds until the process used less than ``busy`` of a core over ``window``; None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - before) / window < busy:
            return time.monotonic() - start
    return None


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, session_root: Path, system_tmp: Path, log: Path):
        self.proc, self.url, self.session_root, self.system_tmp, self.log = proc, url, session_root, system_tmp, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def session_dirs(self) -> list[Path]:
        return sorted(self.session_root.glob("session-*")) if self.session_root.is_dir() else []

    def wait_for_dirs(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.session_dirs()) == count:
                return True
            time.sleep(0.1)
        return len(self.session_dirs()) == count

    def client(self, download_dir: Path):
        from gradio_client import Client

        return Client(self.url, verbose=False, analytics_enabled=False, download_files=str(download_dir))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.tiny_pipeline import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    base = tmp_path_factory.mktemp("load")
    system_tmp, data, cwd = base / "system-tmp", base / "persistent-disk", base / "cwd"
    for d in (system_tmp, data, cwd):
        d.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(system_tmp), "STEADYDANCER_APP_TMP": str(data),
           "GRADIO_TEMP_DIR": str(base / "gradio-cache"), "GRADIO_EXAMPLES_CACHE": str(base / "examples-cache"),
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SSR_MODE": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_HEARTBEAT_INTERVAL": "0.5", "STEADYDANCER_MAX_SESSIONS": str(MAX_SESSIONS),
           "STEADYDANCER_SESSION_IDLE_SECONDS": str(IDLE_SECONDS), "STEADYDANCER_SESSION_SWEEP_SECONDS": "0.5",
           "PYTHONUNBUFFERED": "1",
           # the app as it runs for users: with its render helper process (conftest turns it off in-process)
           "STEADYDANCER_RENDER_HELPERS": "1"}
    log = base / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
             "--model", str(tiny_model), "--offline", "--device", "cpu", "--resolution", "tiny=64x64"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    srv = Server(proc, url, data / "steadydancer-app", system_tmp, log)
    try:
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory) -> Path:
    """A 6000x6000 JPEG of the astronaut (36 MP, 108 MB decoded; under every limit)."""
    from PIL import Image

    path = tmp_path_factory.mktemp("photos") / "big.jpg"
    Image.open(REPO_ROOT / "examples" / "astronaut.png").convert("RGB").resize((6000, 6000), Image.BILINEAR) \
        .save(path, quality=85)
    return path


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """10 s of a real person (160 frames at 16 fps): a preview that runs for several seconds."""
    return write_clip(tmp_path_factory.mktemp("clips") / "long.mp4", make_person_frames(160, (320, 384)), 16.0)


def _preview(client, image, video=None, motion="dance_keyframes", **changes):
    from gradio_client import handle_file

    return client.predict(image=handle_file(str(image)), driving_video=handle_file(str(video)) if video else None,
                          motion="" if video else motion, **{**POSE, **changes}, api_name="/preview_poses")


def _path(value) -> Path:
    return Path(value["video"] if isinstance(value, dict) else value)


# ---------------------------------------------------------------------------------------------
# 1-3: memory bounded, custom session root, files gone when the user leaves
# ---------------------------------------------------------------------------------------------


def test_new_client_sessions_keep_memory_bounded(server, big_photo, tmp_path):
    """Repeated new-client sessions with a 36 MP photo: at most MAX_SESSIONS sessions live, each
    adds at most SESSION_MEMORY_BOUND_MB, and the server's memory does not grow with the number of
    clients (it grew by the photo's 108 MB per session when sessions kept it whole)."""
    rss = []
    for i in range(MAX_SESSIONS + 4):
        client = server.client(tmp_path / f"dl{i}")
        preview, pose, report, poses = _preview(client, big_photo)
        assert _path(preview).is_file() and "Motion" in report
        # The client stays open (a browser tab, a script that keeps its Client): the store's bound
        # closes the least recently used sessions.
        assert len(server.session_dirs()) <= MAX_SESSIONS
        rss.append(rss_mb(server.pid))
    # The bound is reached after MAX_SESSIONS sessions; the first replacement also warms the shared
    # render pool and the allocator's arenas (a one-off step of ~40 MB measured on a quiet machine).
    # From then on every new session replaces one and the memory must stay flat.
    warm = rss[MAX_SESSIONS]
    growth = max(rss[MAX_SESSIONS + 1:]) - warm
    print(f"server RSS after each new-client preview (MB): {[round(r) for r in rss]}; "
          f"growth after {MAX_SESSIONS} sessions: {growth:.0f} MB")
    assert growth < SESSION_MEMORY_BOUND_MB, rss
    assert rss[-1] - rss[0] < MAX_SESSIONS * SESSION_MEMORY_BOUND_MB, rss


def test_session_root_outside_the_temp_folder_serves_previews_and_generation(server, astronaut_path, person_clip,
                                                                             tmp_path):
    from gradio_client import handle_file

    client = server.client(tmp_path / "dl")
    preview, pose, _, poses = _preview(client, astronaut_path, person_clip)
    assert _path(preview).stat().st_size > 1000 and Path(poses).stat().st_size > 100
    video, comparison, seed, used = client.predict(
        image=handle_file(str(astronaut_path)), driving_video=None, motion="dance_keyframes", prompt="dancing",
        negative_prompt="", resolution="tiny", num_frames=5, num_inference_steps=2, guidance_scale=5.0,
        condition_guidance_scale=1.0, condition_window_start=0.1, condition_window_end=0.4, shift=3.0, seed=3,
        randomize_seed=False, preset="quality", smooth=0.3, repair=True, align_mode="auto", alignment_frame=-1,
        lead_in_frames=0, api_name="/generate")
    assert _path(video).stat().st_size > 1000 and (used["width"], used["height"]) == (64, 64)
    dirs = server.session_dirs()
    assert dirs and all(d.is_relative_to(server.session_root) for d in dirs)
    assert not list(server.system_tmp.glob("**/session-*"))  # nothing went to the system temp folder
    client.close()


def test_files_go_when_the_client_leaves_or_idles(server, astronaut_path, tmp_path):
    """A client that closes (a closed tab, a closed gradio_client: its heartbeat stream ends) loses its
    session folder at once; a raw-HTTP client that never says goodbye after IDLE_SECONDS."""
    import httpx

    assert server.wait_for_dirs(0, timeout=IDLE_SECONDS + 5)  # earlier tests' sessions idled out
    leaving = server.client(tmp_path / "dl")
    _preview(leaving, astronaut_path)
    assert len(server.session_dirs()) == 1
    started = time.monotonic()
    leaving.close()
    assert server.wait_for_dirs(0, timeout=IDLE_SECONDS - 2), "the closed client's folder stayed"
    print(f"folder removed {time.monotonic() - started:.1f} s after the client closed")

    assert _raw_preview(server, "load-test-script", astronaut_path)["success"]  # no heartbeat, never leaves
    assert len(server.session_dirs()) == 1
    assert server.wait_for_dirs(0, timeout=IDLE_SECONDS + 4), "the idle session's folder stayed"
    assert httpx.get(server.url + "gradio_api/info", timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------
# 4: request bodies bounded on every route
# ---------------------------------------------------------------------------------------------


def _raw_post(url: str, path: str, headers: dict[str, str], body: bytes, timeout: float = 10) -> tuple[int, str]:
    """POST with the given headers but only ``body`` sent (a declared length may be much larger);
    returns (status, body) as soon as the server answers."""
    host, port = url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1].decode(errors="replace")


def test_large_request_bodies_are_refused_early_on_every_route(server):
    import httpx

    dirs_before, rss_before = len(server.session_dirs()), rss_mb(server.pid)
    # A 321 MB inline base64 photo in a queue request: refused from its declared length alone.
    started = time.monotonic()
    status, body = _raw_post(server.url, "/gradio_api/queue/join",
                             {"Content-Type": "application/json", "Content-Length": str(321 * 1024 * 1024)},
                             b'{"data": ["data:image/png;base64,iVBORw0KGgo')
    assert status == 413 and time.monotonic() - started < 3
    detail = json.loads(body)["detail"]
    assert "too large" in detail and "at most 1 MB" in detail and "upload" in detail

    # Without a length (chunked), it is counted and cut at the limit; the same on any other route.
    def chunks():
        for _ in range(64):
            yield b"A" * 65536  # 4 MB in all

    for route in ("gradio_api/queue/join", "gradio_api/run/predict", "gradio_api/api/preview_poses"):
        r = httpx.post(server.url + route, content=chunks(), headers={"Content-Type": "application/json"},
                       timeout=10)
        assert r.status_code == 413, (route, r.status_code, r.text[:200])
    # Uploads keep their own 200 MB limit (+ multipart framing), checked the same way.
    status, body = _raw_post(server.url, "/gradio_api/upload",
                             {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(300 * 2**20)},
                             b"--x\r\n")
    assert status == 413 and "201 MB" in json.loads(body)["detail"]
    # Small requests pass as before.
    assert httpx.get(server.url + "gradio_api/info", timeout=5).status_code == 200
    assert rss_mb(server.pid) - rss_before < 30
    assert len(server.session_dirs()) == dirs_before  # refused requests leave no folders


# ---------------------------------------------------------------------------------------------
# 5: abandoned and cancelled previews stop
# ---------------------------------------------------------------------------------------------


def _upload(server, path: Path) -> dict:
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(server.url + "gradio_api/upload", files={"files": (path.name, f)}, timeout=30)
    r.raise_for_status()
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def _fn_index(server, api_name: str) -> int:
    import httpx

    config = httpx.get(server.url + "config", timeout=10).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def _raw_preview(server, session_hash: str, image: Path) -> dict:
    """/preview_poses of the project motion over plain HTTP (join, then read the result stream)."""
    import httpx

    payload = {"data": [_upload(server, image), None, "dance_keyframes", 17, 0.3, True, "auto", -1, 0, "realtime"],
               "fn_index": _fn_index(server, "preview_poses"), "session_hash": session_hash, "event_data": None,
               "trigger_id": None}
    assert httpx.post(server.url + "gradio_api/queue/join", json=payload, timeout=10).status_code == 200
    with httpx.stream("GET", server.url + "gradio_api/queue/data", params={"session_hash": session_hash},
                      timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and '"process_completed"' in line:
                return json.loads(line[5:])
    raise AssertionError("no result")


def test_a_disconnected_preview_stops_and_its_files_go(server, astronaut_path, long_clip):
    """A raw-HTTP client starts a long preview and drops the connection at its first progress
    message: the server's CPU goes idle within a few seconds and the session's folder goes."""
    import httpx

    assert server.wait_for_dirs(0, timeout=IDLE_SECONDS + 5)
    session_hash = "load-test-disconnect"
    payload = {"data": [_upload(server, astronaut_path), _upload(server, long_clip),
                        "", 161, 0.3, True, "auto", -1, 0, "realtime"],
               "fn_index": _fn_index(server, "preview_poses"), "session_hash": session_hash, "event_data": None,
               "trigger_id": None}
    r = httpx.post(server.url + "gradio_api/queue/join", json=payload, timeout=10)
    assert r.status_code == 200, r.text
    with httpx.stream("GET", server.url + "gradio_api/queue/data", params={"session_hash": session_hash},
                      timeout=60) as stream:
        for line in stream.iter_lines():
            if '"msg":"progress"' in line.replace(" ", "") and "Extracting" in line:
                break  # mid-extraction: hang up
            assert '"process_completed"' not in line, line
    dropped = time.monotonic()
    idle_after = wait_until_idle(server.pid, timeout=10)
    assert idle_after is not None and idle_after < 5, "the abandoned preview kept running"
    assert server.wait_for_dirs(0, timeout=5)
    print(f"server idle {idle_after:.1f} s after the client disconnected; folder gone "
          f"{time.monotonic() - dropped:.1f} s after")
    assert "stopped: its client disconnected" in server.log.read_text()


def test_cancel_stops_a_running_preview_and_keeps_the_session(server, astronaut_path, long_clip, tmp_path):
    client = server.client(tmp_path / "dl")
    from gradio_client import handle_file

    job = client.submit(image=handle_file(str(astronaut_path)), driving_video=handle_file(str(long_clip)),
                        motion="", **{**POSE, "num_frames": 161}, api_name="/preview_poses")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = job.status()
        if status.progress_data and any("Extracting" in (p.desc or "") for p in status.progress_data):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the preview never reported extraction progress")
    job.cancel()
    idle_after = wait_until_idle(server.pid, timeout=10)
    assert idle_after is not None and idle_after < 5, "the cancelled preview kept running"
    # The user is still there: the session lives on and the next preview works.
    preview, *_ = _preview(client, astronaut_path)
    assert _path(preview).is_file()
    client.close()


# ---------------------------------------------------------------------------------------------
# Gradio internals this relies on
# ---------------------------------------------------------------------------------------------


def test_gradio_queue_internals_used_for_disconnects():
    """studio.disconnect reads Gradio's running events and studio.shutdown writes to its pending
    messages; these are the attributes they need."""
    import inspect

    from gradio import queueing, routes
    from gradio.context import LocalContext
    from gradio.server_messages import ProcessCompletedMessage

    queue_init = inspect.getsource(queueing.Queue.__init__)
    assert "self.pending_messages_per_session" in queue_init and "self.pending_event_ids_session" in queue_init
    assert {"output", "success", "event_id"} <= set(ProcessCompletedMessage.model_fields)

    event_init = inspect.getsource(queueing.Event.__init__)
    assert "self.alive = True" in event_init and "self.closed = False" in event_init and "self._id" in event_init
    assert "job.alive = False" in inspect.getsource(queueing.Queue.clean_events)
    assert "self.active_jobs" in inspect.getsource(queueing.Queue.__init__)
    assert "event.closed = True" in inspect.getsource(routes.App.create_app)  # heartbeat disconnect
    assert hasattr(LocalContext, "event_id") and hasattr(LocalContext, "blocks")


# ---------------------------------------------------------------------------------------------
# 6: the smaller ones
# ---------------------------------------------------------------------------------------------


def test_api_mistakes_name_the_parameter_without_tracebacks(server, astronaut_path, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = server.client(tmp_path / "dl")
    log_start = len(server.log.read_text())
    image = handle_file(str(astronaut_path))
    cases = [
        (dict(num_frames=-1), r"num_frames must be between 5 and 161, got -1"),
        (dict(num_frames="lots"), r"num_frames must be a number, got 'lots'"),
        (dict(smooth=7), r"smooth must be between 0(\.0)? and 1(\.0)?, got 7"),
        (dict(align_mode="sideways"), r"align_mode must be one of 'auto', 'official', 'robust', got 'sideways'"),
        (dict(repair="perhaps"), r"repair must be true or false, got 'perhaps'"),
    ]
    for change, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(image=image, driving_video=None, motion="dance_keyframes", **{**POSE, **change},
                           api_name="/preview_poses")
    # "no" is no (it was read as True).
    *_, report, _ = client.predict(image=image, driving_video=None, motion="dance_keyframes",
                                   **{**POSE, "repair": "no"}, api_name="/preview_poses")
    assert "**Repair:** off" in report
    log = server.log.read_text()[log_start:]
    assert "Traceback" not in log and "Could not preprocess" not in log, log[-2000:]
    client.close()


def test_a_huge_png_is_called_too_large(server, tmp_path):
    """A PNG over Pillow's safety limit (2 x 89.5 MP) is refused for its size, not as "not a PNG"."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    path = tmp_path / "huge.png"
    Image.new("1", (14000, 13000)).save(path)  # 182 MP, a few kB
    client = server.client(tmp_path / "dl")
    with pytest.raises(AppError, match=r"image: huge\.png is too large to open safely.*4000 px") as info:
        client.predict(image=handle_file(str(path)), driving_video=None, motion="dance_keyframes", **POSE,
                       api_name="/preview_poses")
    assert "Use a PNG" not in str(info.value)
    client.close()


def test_only_example_media_are_served_from_examples(server):
    import httpx

    examples = REPO_ROOT / "examples"
    for name in ("astronaut.png", "dance_keyframes.mp4"):
        assert httpx.get(f"{server.url}gradio_api/file={examples / name}", timeout=10).status_code == 200, name
    for name in ("make_examples.py", "README.md", "dance_keyframes.poses.json", "astronaut.character.json"):
        assert httpx.get(f"{server.url}gradio_api/file={examples / name}", timeout=10).status_code == 403, name


def test_a_new_photo_and_a_new_clip_are_checked_by_their_own_events(tmp_path):
    """The photo's change event runs detect_character: private, in the CPU previews' concurrency
    group (the detector's work counts against the same limit), the latest change only, no spinner.
    An uploaded clip's header is read by check_driving, which never waits in a queue; its frames are
    decoded by decode_driving, with the length and frame rate set, in the CPU group."""
    from studio import AppConfig, Studio, build_demo

    config = AppConfig.from_env().replace(model=str(tmp_path / "none"), offline=True, device="cpu",
                                          tmp_root=tmp_path / "sessions", zero_gpu=False)
    demo = build_demo(Studio(config))
    image = demo.components_by_name["image"]
    (fn,) = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "detect_character"]
    previews = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "preview_poses"]
    assert fn.targets == [(image._id, "change")] and fn.inputs == [image] and fn.outputs == []
    assert (fn.concurrency_id, fn.concurrency_limit) == (previews[0].concurrency_id, previews[0].concurrency_limit)
    assert fn.trigger_mode == "always_last" and fn.show_progress == "hidden" and fn.api_visibility == "private"
    clip = demo.components_by_name["driving_video"]
    (check,) = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "check_driving"]
    assert check.targets == [(clip._id, "upload")] and check.inputs == [clip] and check.outputs == []
    assert check.concurrency_limit is None and check.api_visibility == "private"
    (decode,) = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "decode_driving"]
    by_name = demo.components_by_name
    assert decode.targets == [(clip._id, "upload")] and decode.outputs == []
    assert decode.inputs == [clip, by_name["num_frames"], by_name["lead_in_frames"], by_name["frame_rate"]]
    assert (decode.concurrency_id, decode.concurrency_limit) == (previews[0].concurrency_id,
                                                                 previews[0].concurrency_limit)
    assert decode.trigger_mode == "always_last" and decode.show_progress == "hidden"
    assert decode.api_visibility == "private"


def test_the_estimate_reads_no_photo_so_errors_show_once(tmp_path, astronaut_path):
    """Gradio preprocesses (opens) the photo for every event that takes it: the estimate event runs
    without preprocessing, so an unreadable photo is reported by Preview/Generate only."""
    from studio import AppConfig, Studio, build_demo

    config = AppConfig.from_env().replace(model=str(tmp_path / "none"), offline=True, device="cpu",
                                          tmp_root=tmp_path / "sessions", zero_gpu=False)
    studio = Studio(config)
    demo = build_demo(studio)
    estimates = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "estimate_text"]
    assert estimates and not any(fn.preprocess for fn in estimates)
    from steadydancer import settings

    assert demo.delete_cache == (settings.GRADIO_CACHE_SWEEP_SECONDS, settings.GRADIO_CACHE_MAX_AGE_SECONDS)
    previews = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "preview_poses"]
    assert previews and all(fn.preprocess for fn in previews)
    raw = {"path": str(astronaut_path), "orig_name": "astronaut.png", "meta": {"_type": "gradio.FileData"}}
    assert "Estimated GPU time" in studio.estimate_text(raw, "480p", 81, 40, 5.0, 1.0, 0.1, 0.4, "quality")


# Last: it stops the module's server.
def test_a_stopping_server_tells_waiting_clients(server, astronaut_path, long_clip, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = server.client(tmp_path / "dl")
    job = client.submit(image=handle_file(str(astronaut_path)), driving_video=handle_file(str(long_clip)),
                        motion="", **{**POSE, "num_frames": 161}, api_name="/preview_poses")
    deadline = time.monotonic() + 30
    while not (job.status().progress_data or time.monotonic() > deadline):
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)  # what a Space restart sends
    with pytest.raises(AppError, match="The server is shutting down"):
        job.result(timeout=30)
    assert server.proc.wait(timeout=20) is not None



@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_fixed_mmap_threshold():
    """studio.memory sets M_MMAP_THRESHOLD through ctypes (what keeps the memory test above flat:
    without it the server's memory wandered by +-50 MB between previews)."""
    from studio.memory import MMAP_THRESHOLD_BYTES, fix_mmap_threshold

    assert fix_mmap_threshold(MMAP_THRESHOLD_BYTES) is True
