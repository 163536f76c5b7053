"""Server memory under repeated new-client sessions with a large photo.

Starts the app (``python app.py``, no weights: the preview needs none) as its own process, then N
times: a new gradio_client ``Client`` previews the project motion with a big photo; after each, the
server's resident memory (VmRSS, Linux) is printed. The clients stay open, as tabs would.

    python benchmarks/app_sessions.py --sessions 10 --max-sessions 3
    python benchmarks/app_sessions.py --app /path/to/another/checkout/app.py   # compare two versions
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default=str(ROOT / "app.py"), help="the app.py to run")
    parser.add_argument("--photo", default=None, help="photo to send (default: the astronaut at 6000x6000)")
    parser.add_argument("--size", type=int, default=6000, help="side of the default photo")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--max-sessions", type=int, default=3, help="STEADYDANCER_MAX_SESSIONS for the server")
    args = parser.parse_args()

    import httpx
    from gradio_client import Client, handle_file
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="app-sessions-"))
    photo = Path(args.photo) if args.photo else work / "big.jpg"
    if not args.photo:
        Image.open(ROOT / "examples" / "astronaut.png").convert("RGB").resize(
            (args.size, args.size), Image.BILINEAR).save(photo, quality=85)
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(work / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_SSR_MODE": "False", "HF_HUB_OFFLINE": "1", "STEADYDANCER_APP_TMP": str(work / "data"),
           "STEADYDANCER_MAX_SESSIONS": str(args.max_sessions)}
    proc = subprocess.Popen([sys.executable, args.app, "--port", str(port), "--model", str(work / "no-weights"),
                             "--offline"], cwd=work, env=env, stdout=open(work / "server.log", "w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app did not start; see {work / 'server.log'}")
            time.sleep(0.3)
        with Image.open(photo) as im:
            print(f"photo {photo.name}: {im.width}x{im.height} ({im.width * im.height / 1e6:.0f} MP), "
                  f"{photo.stat().st_size / 1e6:.1f} MB; server RSS at start {rss_mb(proc.pid):.0f} MB")
        clients, rss = [], []
        for i in range(args.sessions):
            client = Client(url, verbose=False, analytics_enabled=False, download_files=str(work / "downloads"))
            client.predict(image=handle_file(str(photo)), driving_video=None, motion="dance_keyframes", num_frames=17,
                           smooth=0.3, repair=True, align_mode="auto", alignment_frame=-1, lead_in_frames=0,
                           api_name="/preview_poses")
            clients.append(client)
            rss.append(rss_mb(proc.pid))
            print(f"session {i + 1:3d}: server RSS {rss[-1]:7.0f} MB", flush=True)
        print(f"RSS after each session (MB): {[round(r) for r in rss]}; last - first: {rss[-1] - rss[0]:+.0f} MB")
        for client in clients:
            client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
