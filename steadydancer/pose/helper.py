"""Condition videos rendered and encoded by a helper process, beside this one.

Why a process: a condition frame costs ~3 ms to draw and resample, and part of that is Python
between the OpenCV and PIL calls, which holds the GIL. The render threads of one process
(:func:`steadydancer.pose.outputs.render_pool`) queue on it, so on two cores the files of the
pose path kept only ~1.7 cores busy. A second interpreter has its own GIL: with one condition
video written by a helper, the CLI's five files are written 1.12-1.21x faster, and the whole
``pose`` command takes 0.95x the time (README "Measured numbers", ``benchmarks/pose_path.py``).

How:

* A helper is ``python -c "...serve()"`` (a plain subprocess, not ``multiprocessing``: that
  would re-run the parent's ``__main__``, and the parent runs mediapipe's and the encoders'
  threads, which rules out fork). Its stdin carries pickled requests, its stdout pickled
  replies; anything else the child prints goes to its stderr.
* Helpers are started early (:func:`start_helpers`: the CLI before the detector runs, the app
  when it starts), so a helper's start-up (~0.3 s of CPU to import numpy, OpenCV and PIL) falls
  where the detector leaves part of a core idle, and they live as long as this process. A helper
  takes one video at a time; :func:`take_helper` never waits: with no idle, started helper the
  video is rendered by threads here, as before.
* The video is the same file either way: the same frames (a :class:`ConditionJob` holds the
  sizes :func:`~steadydancer.pose.outputs.condition_renderer` draws at, see
  :func:`~steadydancer.pose.outputs.condition_job`) through the same
  :class:`~steadydancer.video.VideoWriter` settings (tests compare the bytes).
* Cancel reaches the helper within a frame; it removes its unfinished file. A helper that dies
  mid-video (killed, out of memory) is replaced by the caller rendering the video itself.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pickle
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import SteadyDancerInputError

#: Helper processes on a machine with this many cores or more: one. A helper only pays where a
#: core is left for it; with more helpers than that the videos would queue on the cores instead.
HELPER_MIN_CORES = 2
#: Environment variable overriding :func:`default_helpers` (a count; 0 turns helpers off).
HELPERS_ENV = "STEADYDANCER_RENDER_HELPERS"
#: Seconds a helper is given to exit when this process ends, before it is killed.
HELPER_EXIT_SECONDS = 2.0


@dataclass(frozen=True)
class ConditionJob:
    """One condition video for a helper: the poses and everything the drawing and the encoder
    need (small: ~0.5 MB of poses for 316 frames)."""

    path: str
    poses: object  #: a PoseSequence; frame ``i`` is drawn as frame ``i`` of the video
    canvas: tuple[int, int]  #: (W, H) of the official canvas the pose is drawn on
    size: tuple[int, int]  #: (W, H) of the video
    draw_face: bool
    fps: float
    settings: object  #: a steadydancer.video.EncodeSettings


# --------------------------------------------------------------------------------------------
# The helper process
# --------------------------------------------------------------------------------------------


def serve() -> None:
    """The helper's main loop: requests on stdin, replies on stdout, until stdin closes.

    Requests: ``("job", id, ConditionJob)``, ``("cancel", id)``. Replies: ``("ready", pid)`` once
    started, then per job ``("progress", id, frames)`` after each frame and one of ``("done",
    id, frames)``, ``("cancelled", id)``, ``("error", id, exception)``."""
    import signal

    # Ctrl-C reaches the whole process group: the parent handles it, and its exit closes our
    # stdin, which ends this loop (a job in progress is removed by the parent's cancel).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print cannot corrupt the replies
    sys.stdout = sys.stderr
    from ..video import VideoWriter  # noqa: F401  (imported now: the first job starts at once)
    from .render import render_resized  # noqa: F401

    jobs: "queue.Queue" = queue.Queue()
    cancelled: set[int] = set()
    ended = threading.Event()  # stdin closed: the parent is gone or ending, so is every job

    def read() -> None:
        try:
            while True:
                request = pickle.load(requests)
                if request[0] == "cancel":
                    cancelled.add(request[1])
                else:
                    jobs.put(request)
        except (EOFError, OSError, pickle.UnpicklingError):
            ended.set()
            jobs.put(None)

    def reply(message: tuple) -> None:
        try:
            pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()
        except OSError:  # the parent is gone: stop (a job in progress removes its file)
            raise SystemExit(0) from None

    threading.Thread(target=read, daemon=True, name="helper-requests").start()
    reply(("ready", os.getpid()))
    while (request := jobs.get()) is not None:
        _, job_id, job = request
        try:
            outcome = _write(job, lambda: job_id in cancelled or ended.is_set(),
                             lambda n: reply(("progress", job_id, n)))
        except Exception as exc:
            reply(("error", job_id, _portable(exc)))
            continue
        finally:
            cancelled.discard(job_id)
        reply(("cancelled", job_id) if outcome is None else ("done", job_id, outcome))


def _write(job: ConditionJob, cancelled, progress) -> Optional[int]:
    """Draw and encode the job's video (the next frame is drawn on a thread while this one is
    encoded); the frame count, or ``None`` when cancelled (its file removed)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..video import VideoWriter
    from .render import render_resized

    def render(index: int):
        return render_resized(job.poses[index], job.canvas, job.size, draw_face=job.draw_face)

    total = len(job.poses)
    writer = VideoWriter(job.path, job.fps, settings=job.settings)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="helper-render") as pool:
        ahead = pool.submit(render, 0) if total else None
        try:
            for index in range(total):
                frame = ahead.result()
                ahead = pool.submit(render, index + 1) if index + 1 < total else None
                if cancelled():
                    writer.abort()
                    return None
                writer.write(frame)
                progress(index + 1)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            if ahead is not None:
                ahead.cancel()
    return writer.count


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# This side
# --------------------------------------------------------------------------------------------


class HelperGone(RuntimeError):
    """The helper process ended while it had a video (the caller renders the video itself)."""


class RenderHelper:
    """One helper process and its replies (read by a thread of ours into per-job queues)."""

    _ids = itertools.count(1)
    #: What the child runs (``python -c``).
    CODE = "from steadydancer.pose.helper import serve; serve()"

    def __init__(self):
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the package
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.owner = os.getpid()  # a forked copy of this process must not use (or end) it
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CODE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
        self.ready = threading.Event()
        self.busy = False
        self._write_lock = threading.Lock()
        self._queues: dict[int, "queue.Queue"] = {}
        self._gone = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True, name="helper-replies")
        self._reader.start()

    @property
    def alive(self) -> bool:
        return os.getpid() == self.owner and not self._gone.is_set() and self.proc.poll() is None

    def _read(self) -> None:
        try:
            while True:
                message = pickle.load(self.proc.stdout)
                if message[0] == "ready":
                    self.ready.set()
                    continue
                box = self._queues.get(message[1])
                if box is not None:
                    box.put(message)
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        finally:
            self._gone.set()
            for box in list(self._queues.values()):
                box.put(("gone",))

    def _send(self, message: tuple) -> None:
        with self._write_lock:
            pickle.dump(message, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()

    def run(self, job: ConditionJob, abort: threading.Event, on_progress) -> Optional[int]:
        """Have the helper write ``job``; blocks until it is done. Returns the frame count, or
        ``None`` when ``abort`` was set (the helper removed the file). Raises the helper's error,
        or :class:`HelperGone` if the helper ended first."""
        job_id = next(self._ids)
        box: "queue.Queue" = queue.Queue()
        self._queues[job_id] = box
        try:
            if self._gone.is_set():
                raise HelperGone("the render helper has ended")
            try:
                self._send(("job", job_id, job))
            except (OSError, ValueError) as exc:
                raise HelperGone(f"the render helper has ended ({exc})") from None
            cancel_sent = False
            while True:
                try:
                    message = box.get(timeout=0.05)
                except queue.Empty:
                    message = None
                if abort.is_set() and not cancel_sent:
                    cancel_sent = True
                    try:
                        self._send(("cancel", job_id))
                    except (OSError, ValueError):
                        pass  # it has ended: the "gone" message follows
                if message is None:
                    continue
                kind = message[0]
                if kind == "progress":
                    on_progress(message[2])
                elif kind == "done":
                    return message[2]
                elif kind == "cancelled":
                    return None
                elif kind == "error":
                    raise message[2]
                else:  # "gone"
                    raise HelperGone(f"the render helper ended (exit status {self.proc.poll()})")
        finally:
            self._queues.pop(job_id, None)

    def close(self, timeout: float = HELPER_EXIT_SECONDS) -> None:
        """Ask the helper to exit (its stdin closes), kill it if it does not."""
        if os.getpid() != self.owner:  # a fork of the process that started it: leave it to that one
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=timeout)
        if self.proc.stdout:
            self.proc.stdout.close()


_HELPERS: list[RenderHelper] = []
_LOCK = threading.Lock()
#: Set when a helper ended before it was ready (it cannot start here: a broken install, no
#: memory): no other is started in this process, the videos are drawn by threads.
_CANNOT_START: list[str] = []


def default_helpers() -> int:
    """Helpers for this machine: ``$STEADYDANCER_RENDER_HELPERS`` if set (0: none), else one where
    there are :data:`HELPER_MIN_CORES` cores, none below."""
    from .extract import available_cores

    text = os.environ.get(HELPERS_ENV, "").strip()
    if text:
        try:
            return max(0, int(text))
        except ValueError:
            raise SteadyDancerInputError(
                f"{HELPERS_ENV}={text!r} is not a number: set it to how many render helper processes "
                "to run (0: none, the videos are drawn by threads of this process).") from None
    return 1 if available_cores() >= HELPER_MIN_CORES else 0


def start_helpers(count: Optional[int] = None) -> int:
    """Make sure ``count`` helpers (default :func:`default_helpers`) are running or starting;
    returns how many there are. Does not wait for them to be ready. Ended helpers are replaced."""
    count = default_helpers() if count is None else max(0, int(count))
    with _LOCK:
        for helper in [h for h in _HELPERS if not h.alive and not h.busy]:
            _HELPERS.remove(helper)
            helper.close(timeout=0)
            if not helper.ready.is_set() and not _CANNOT_START:
                _CANNOT_START.append(f"exit status {helper.proc.returncode}")
                print(f"steadydancer: the render helper process ended as it started "
                      f"({_CANNOT_START[0]}; its error is above); rendering in this process", file=sys.stderr)
        while len(_HELPERS) < count and not _CANNOT_START:
            try:
                _HELPERS.append(RenderHelper())
            except OSError as exc:  # no helper: the videos are rendered here, as without one
                _CANNOT_START.append(str(exc))
                print(f"steadydancer: no render helper ({exc}); rendering in this process", file=sys.stderr)
        return len(_HELPERS)


def take_helper() -> Optional[RenderHelper]:
    """An idle, started helper, now marked busy (give it back with :func:`give_back`), or None."""
    with _LOCK:
        for helper in _HELPERS:
            if not helper.busy and helper.ready.is_set() and helper.alive:
                helper.busy = True
                return helper
    return None


def give_back(helper: RenderHelper) -> None:
    with _LOCK:
        helper.busy = False


def wait_for_helpers(timeout: float) -> bool:
    """Wait until every running helper is ready for a video (benchmarks and tests, which must
    not time a helper's start-up); whether they all are."""
    import time

    deadline = time.monotonic() + timeout
    with _LOCK:
        helpers = [h for h in _HELPERS if h.alive]
    return all(h.ready.wait(max(0.0, deadline - time.monotonic())) for h in helpers)


def helper_pids() -> list[int]:
    """Process ids of the running helpers (benchmarks add their CPU time to this process's)."""
    with _LOCK:
        return [h.proc.pid for h in _HELPERS if h.alive]


def stop_helpers() -> None:
    """End every helper (at exit; tests use it to compare with and without)."""
    with _LOCK:
        helpers = list(_HELPERS)
        _HELPERS.clear()
    for helper in helpers:
        helper.close()


def _forget_after_fork() -> None:
    """In a forked child (ZeroGPU forks its GPU workers): the helpers are the parent's, and so is
    the lock's state; the child starts its own if it needs any."""
    global _LOCK
    _LOCK = threading.Lock()
    _HELPERS.clear()


atexit.register(stop_helpers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
