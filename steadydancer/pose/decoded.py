"""A driving clip decoded ahead of its extraction, read back while it still decodes.

The detector is the pose path's slow part, and the decoder beside it takes from it: on two cores,
extracting poses from frames already in memory takes ~0.87x the time of decoding and detecting
together (``benchmarks/pose_path.py``). The app therefore decodes an uploaded clip as soon as it
arrives, while the user is still on the page (``studio.sessions.decode_on_arrival``), and the
preview's extraction reads those frames (:func:`~steadydancer.pose.path.extract_driving`'s
``decoded``). A preview clicked before the decode is over reads each frame as it comes.

The frames are those of :func:`~steadydancer.pose.extract.detection_frames` for the same clip,
frame rate and length: the poses are the same bit for bit. Whatever the decode does not deliver
(it was stopped, ran out of :class:`FrameBudget`, or failed) the reader decodes from the file,
skipping the frames it has: the same frames again, or the same error the file gives.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Iterator, Optional

import numpy as np


class FrameBudget:
    """Bytes of frames decoded ahead and not yet read, for every :class:`DecodedClip` that shares
    it (the app: one per process), at most ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        """Reserve ``nbytes``; False (nothing reserved) if they do not fit."""
        with self._lock:
            if self.used + nbytes > self.max_bytes:
                return False
            self.used += nbytes
            return True

    def give(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes


class DecodedClip:
    """The detection frames of ``path`` at ``fps`` (0: every source frame), at most ``max_frames``:
    :meth:`decode` fills it in one thread, :meth:`frames` reads it once, in order, in another.

    Each frame is handed to the reader, not copied, and its bytes go back to the budget as it is
    read. :meth:`stop` (the clip was replaced, the session ended) ends the decode at the next
    frame and lets go of what was not read."""

    def __init__(self, path, fps: float, max_frames: Optional[int], budget: Optional[FrameBudget] = None):
        self.path = Path(path)
        self.fps = float(fps)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.budget = budget
        self._frames: list[Optional[np.ndarray]] = []
        self._held = 0  # bytes taken from the budget for frames not yet read
        self._ended = False  # the decode is over: complete, stopped, out of budget or failed
        self._complete = False  # ... and every frame is in ``_frames``
        self._stop = threading.Event()
        self._changed = threading.Condition()

    def matches(self, path, fps: float, max_frames: Optional[int]) -> bool:
        """These are the frames an extraction of ``path`` at ``fps``, ``max_frames`` decodes."""
        return (Path(path) == self.path and float(fps) == self.fps
                and (None if max_frames is None else int(max_frames)) == self.max_frames)

    @property
    def ended(self) -> bool:
        return self._ended

    def decode(self) -> None:
        """Decode the clip now, in this thread; returns when it is decoded, stopped, out of budget
        or failed (a failure is not raised: the reader meets it in the file)."""
        from .extract import detection_frames

        complete = False
        frames = None
        try:
            frames = detection_frames(self.path, fps=self.fps, max_frames=self.max_frames)
            for frame in frames:
                if self._stop.is_set() or (self.budget is not None and not self.budget.take(frame.nbytes)):
                    break
                with self._changed:
                    self._frames.append(frame)
                    self._held += frame.nbytes
                    self._changed.notify_all()
            else:
                complete = not self._stop.is_set()
        except Exception:  # noqa: BLE001 -- the reader decodes the file and meets the error there
            pass  # (not complete)
        finally:
            if frames is not None:
                frames.close()  # the decoder stops now
            with self._changed:
                self._ended, self._complete = True, complete
                self._changed.notify_all()
            if self._stop.is_set():
                self._let_go()

    def frames(self) -> Iterator[np.ndarray]:
        """The frames in order, each once, waiting for the decode where the reader is ahead of it;
        what the decode did not deliver comes from the file. Closing the iterator stops the decode."""
        index = 0
        try:
            while True:
                with self._changed:
                    while index >= len(self._frames) and not self._ended:
                        self._changed.wait()
                    frame = self._frames[index] if index < len(self._frames) else None
                    if frame is not None:
                        self._frames[index] = None
                        self._held -= frame.nbytes
                    elif self._complete and index >= len(self._frames):
                        return
                if frame is None:  # stopped, out of budget or failed: the rest from the file
                    break
                if self.budget is not None:
                    self.budget.give(frame.nbytes)
                yield frame
                index += 1
            from .extract import detection_frames

            rest = detection_frames(self.path, fps=self.fps, max_frames=self.max_frames)
            try:
                yield from itertools.islice(rest, index, None)
            finally:
                rest.close()
        finally:
            self.stop()

    def stop(self) -> None:
        """End the decode at its next frame and let go of the frames not read."""
        self._stop.set()
        self._let_go()

    def _let_go(self) -> None:
        with self._changed:
            held, self._held = self._held, 0
            self._frames = [None] * len(self._frames)
            self._changed.notify_all()
        if self.budget is not None and held:
            self.budget.give(held)
