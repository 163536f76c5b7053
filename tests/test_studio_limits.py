"""Unit tests of the app's load limits: the request body middleware, the bounded session store and
the working-size photo (the server-level checks are in test_app_load.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from studio.limits import RequestBodyLimit  # noqa: E402
from studio.session_store import SessionsFull, SessionStore, Sweeper, remove_session_dirs  # noqa: E402
from studio.working_image import working_copy, working_size  # noqa: E402

# ---------------------------------------------------------------------------------------------
# RequestBodyLimit
# ---------------------------------------------------------------------------------------------


def _run_asgi(middleware, path: str, chunks: list[bytes], content_length: int | None):
    """Drive the middleware with a body in ``chunks``; returns (status, body, bytes the app read)."""
    seen = {"read": 0}

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RuntimeError("client went away")  # what a framework does mid-body
            seen["read"] += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = middleware(app)
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "path": path, "headers": headers, "method": "POST"}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    pulled = {"n": 0}

    async def receive():
        pulled["n"] += 1
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, seen["read"], pulled["n"]


def _limit(app):
    return RequestBodyLimit(app, default_limit=1000, limits=[("/upload", 5000)], hint="Use /upload for files.")


def test_body_limit_refuses_declared_length_without_reading():
    status, body, read, pulled = _run_asgi(_limit, "/gradio_api/queue/join", [b"x" * 10], content_length=10**9)
    assert status == 413
    assert read == 0 and pulled == 0  # refused from the header alone
    detail = json.loads(body)["detail"]
    assert "/gradio_api/queue/join" in detail and "at most" in detail and "Use /upload" in detail


def test_body_limit_counts_chunked_bodies_and_stops_reading():
    chunks = [b"x" * 400] * 50  # 20 kB, no Content-Length
    status, body, read, pulled = _run_asgi(_limit, "/gradio_api/queue/join", chunks, content_length=None)
    assert status == 413
    assert read <= 1000 and pulled <= 4  # the app stopped at the limit, the rest was never pulled


def test_body_limit_lets_small_bodies_and_uploads_through():
    assert _run_asgi(_limit, "/gradio_api/queue/join", [b"{}"], content_length=2)[:1] == (200,)
    status, _, read, _ = _run_asgi(_limit, "/gradio_api/upload", [b"y" * 4000], content_length=4000)
    assert status == 200 and read == 4000  # /upload has its own, larger limit
    assert _run_asgi(_limit, "/gradio_api/upload", [b"y" * 6000], content_length=6000)[0] == 413


# ---------------------------------------------------------------------------------------------
# SessionStore
# ---------------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _store(max_sessions=3, idle=10.0):
    closed = []
    clock = Clock()
    store = SessionStore(lambda key: {"key": key}, lambda v: closed.append(v["key"]), max_sessions=max_sessions,
                         idle_seconds=idle, clock=clock)
    return store, closed, clock


def test_store_reuses_a_session_and_closes_idle_ones():
    store, closed, clock = _store()
    with store.use("a") as first:
        pass
    with store.use("a") as again:
        assert again is first
    clock.t = 5
    with store.use("b"):
        pass
    clock.t = 12  # "a" idle 12 s > 10, "b" idle 7 s
    assert store.sweep() == 1 and closed == ["a"] and store.keys() == ["b"]


def test_store_bounds_the_total_closing_the_least_recently_used():
    store, closed, clock = _store(max_sessions=3)
    for key in "abc":
        with store.use(key):
            pass
    with store.use("a"):  # "b" is now the least recently used
        pass
    with store.use("d"):
        pass
    assert closed == ["b"] and sorted(store.keys()) == ["a", "c", "d"]
    assert len(store) == 3


def test_store_never_closes_a_busy_session():
    store, closed, clock = _store(max_sessions=2, idle=1.0)
    with store.use("a"):
        clock.t = 100
        assert store.sweep() == 0  # running: not idle however old
        with store.use("b"):
            with pytest.raises(SessionsFull):
                with store.use("c"):
                    pass
        assert store.end("a") is True and closed == []  # not while its event runs
    assert closed == [] and "a" not in store  # ended; closed once Gradio has taken the event's files
    clock.t += store.close_delay + 1
    store.sweep()
    assert "a" in closed  # ("b" idled out meanwhile)


def test_store_end_and_close_all():
    store, closed, _ = _store()
    with store.use("a"):
        pass
    with store.use("b"):
        pass
    assert store.end("a") and not store.end("zzz")
    assert store.close_all() == 1 and sorted(closed) == ["a", "b"] and len(store) == 0


def test_sweeper_runs_on_a_timer():
    import threading

    calls = threading.Event()
    sweeper = Sweeper(calls.set, interval=0.05)
    sweeper.start()
    try:
        assert calls.wait(2.0)
    finally:
        sweeper.stop()


def test_remove_session_dirs_only_touches_old_session_folders(tmp_path):
    import os
    import time

    old, fresh, other = tmp_path / "session-old", tmp_path / "session-new", tmp_path / "keep-me"
    for d in (old, fresh, other):
        d.mkdir()
    past = time.time() - 1000
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    assert remove_session_dirs(tmp_path, older_than=100) == 1
    assert not old.exists() and fresh.exists() and other.exists()


# ---------------------------------------------------------------------------------------------
# Working-size photo
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(9000, 9000), (4032, 3024), (3024, 4032), (6000, 1000), (1000, 7001), (401, 583), (6117, 3789), (1857, 6000), (8882, 9571), (2130, 4238)])
def test_working_size_keeps_every_rounded_size(size):
    from steadydancer.constants import size_for_area

    areas = [1024 * 576, 832 * 480, 64 * 64]
    bound = 4 * 1024 * 576
    w, h = working_size(*size, max_area=bound, areas=areas)
    assert w * h <= 4 * bound
    assert (w, h) == size if size[0] * size[1] <= bound else w * h < size[0] * size[1]
    for area in areas:
        assert size_for_area(w, h, area) == size_for_area(*size, area)


def test_working_copy_of_a_huge_photo_is_small():
    from PIL import Image

    big = Image.new("RGB", (9000, 9000), (200, 100, 50))
    small = working_copy(big, max_area=4 * 1024 * 576, areas=[1024 * 576, 832 * 480])
    assert small.width * small.height <= 4 * 1024 * 576
    assert small.getpixel((10, 10)) == (200, 100, 50)
    tiny = Image.new("RGB", (640, 480))
    assert working_copy(tiny, max_area=4 * 1024 * 576, areas=[1024 * 576]) is tiny
    edge = working_size(7605, 2808, 4 * 1024 * 576, [1024 * 576, 832 * 480, 64 * 64])  # no exact fit
    assert edge[0] * edge[1] <= 4 * 1024 * 576  # the memory bound holds anyway

