"""Per-session state with a time to live and a bound on the total, and the timer that sweeps it.

Gradio's own ``gr.State`` is not enough for state that holds memory and files: API clients
(gradio_client, raw HTTP) never "close a tab", so their state lives for ever; a closed browser tab
keeps it for an hour; and when Gradio's session table is full it drops the oldest session without
calling the state's ``delete_callback`` (the files stay). So the app keeps its sessions here, keyed by
Gradio's session hash (``gr.Request.session_hash``: one per browser tab, one per ``Client``):

* :meth:`SessionStore.use` -- the session of a request, created on first use, held while the event
  runs (a busy session is never closed under it);
* a session idle for ``idle_seconds`` is closed by :meth:`SessionStore.sweep` (its folder removed);
* at most ``max_sessions`` live at once: a new one closes the least recently used idle one;
* :meth:`SessionStore.end` closes a session now (the browser left: ``demo.unload``), or as soon as
  its running event returns;
* :class:`Sweeper` runs the sweep on a timer (a daemon thread started and stopped with the server),
  and also removes session folders left by an earlier process.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Iterator, Optional, TypeVar

log = logging.getLogger("steadydancer.app")

T = TypeVar("T")

#: Prefix of every session folder (the sweep of orphans touches nothing else).
SESSION_DIR_PREFIX = "session-"


class SessionsFull(Exception):
    """Every session slot is held by a running event (cannot happen with the app's queue limits
    unless ``max_sessions`` is below the number of concurrent events)."""


@dataclass
class _Entry(Generic[T]):
    value: T
    last_used: float
    busy: int = 0
    ending: bool = False
    created: float = field(default_factory=time.monotonic)


class SessionStore(Generic[T]):
    """Sessions by key, bounded in number and idle time.

    Args:
        factory: builds a new session's value (called with the key).
        close: releases a value (removes its folder); called exactly once per value, outside the
            store's lock, never while an event holds it (a session ended during an event is closed
            by the sweep ``close_delay`` seconds after the event returned).
        max_sessions: sessions kept at once.
        idle_seconds: a session unused for this long is closed by :meth:`sweep`.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, factory: Callable[[str], T], close: Callable[[T], None], *, max_sessions: int,
                 idle_seconds: float, clock: Callable[[], float] = time.monotonic,
                 close_delay: float = 10.0) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.factory = factory
        self._close = close
        self.max_sessions = int(max_sessions)
        self.idle_seconds = float(idle_seconds)
        self.clock = clock
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()  # least recently used first
        #: sessions ended while an event ran: closed by the sweep ``close_delay`` seconds after the event
        #: returned (Gradio still copies the event's output files after the handler returns)
        self.close_delay = float(close_delay)
        self._closing: list[tuple[float, T]] = []
        self._lock = threading.Lock()
        self.closed_count = 0  #: sessions closed so far (any reason)

    # -- access ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def use(self, key: str) -> Iterator[T]:
        """The session ``key`` (created when new), held for the duration of the ``with`` block."""
        entry, evicted = self._acquire(str(key))
        self._close_all(evicted)
        try:
            yield entry.value
        finally:
            self._release(str(key), entry)

    def get(self, key: str) -> Optional[T]:
        """The session ``key`` if it is open (not created, not touched)."""
        with self._lock:
            entry = self._entries.get(str(key))
            return None if entry is None else entry.value

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return str(key) in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def values(self) -> list[T]:
        with self._lock:
            return [e.value for e in self._entries.values()]

    # -- ending ------------------------------------------------------------------------------------

    def end(self, key: str) -> bool:
        """Close session ``key`` now, or when its running event returns. False if unknown."""
        with self._lock:
            entry = self._entries.get(str(key))
            if entry is None:
                return False
            if entry.busy:
                entry.ending = True
                return True
            del self._entries[str(key)]
        self._close_all([entry.value])
        return True

    def sweep(self) -> int:
        """Close every idle session unused for ``idle_seconds`` (and the ended ones whose delay is
        over); returns how many."""
        now = self.clock()
        with self._lock:
            expired = [k for k, e in self._entries.items() if not e.busy and now - e.last_used > self.idle_seconds]
            values = [self._entries.pop(k).value for k in expired]
            due = [v for t, v in self._closing if t <= now]
            self._closing = [(t, v) for t, v in self._closing if t > now]
            values += due
        self._close_all(values)
        return len(values)

    def close_all(self) -> int:
        """Close every session that is not running an event (server shutdown: all of them)."""
        with self._lock:
            idle = [k for k, e in self._entries.items() if not e.busy]
            values = [self._entries.pop(k).value for k in idle] + [v for _, v in self._closing]
            self._closing = []
            for e in self._entries.values():
                e.ending = True
        self._close_all(values)
        return len(values)

    # -- internals ---------------------------------------------------------------------------------

    def _acquire(self, key: str) -> tuple[_Entry[T], list[T]]:
        evicted: list[T] = []
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.ending:
                if entry is not None:  # ending but still busy: a new request starts a fresh session
                    self._entries.pop(key)
                while len(self._entries) >= self.max_sessions:
                    victim = next((k for k, e in self._entries.items() if not e.busy), None)
                    if victim is None:
                        raise SessionsFull(
                            f"All {self.max_sessions} session slots are busy; try again in a minute.")
                    evicted.append(self._entries.pop(victim).value)
                entry = _Entry(self.factory(key), self.clock())
                self._entries[key] = entry
            entry.busy += 1
            entry.last_used = self.clock()
            self._entries.move_to_end(key)
        return entry, evicted

    def _release(self, key: str, entry: _Entry[T]) -> None:
        with self._lock:
            entry.busy -= 1
            entry.last_used = self.clock()
            if entry.ending and entry.busy == 0:
                if self._entries.get(key) is entry:
                    del self._entries[key]
                self._closing.append((self.clock() + self.close_delay, entry.value))

    def _close_all(self, values: list[T]) -> None:
        for value in values:
            try:
                self._close(value)
            except Exception:  # a failing clean-up must not break the request that triggered it
                log.exception("closing a session failed")
            self.closed_count += 1


def remove_session_dirs(root: Path, older_than: float, keep: set[Path] = frozenset()) -> int:
    """Remove ``session-*`` folders under ``root`` not modified for ``older_than`` seconds (left by an
    earlier process, or by a session that was never closed) except those in ``keep``."""
    if not root.is_dir():
        return 0
    now = time.time()
    removed = 0
    for child in root.iterdir():
        try:
            if (child.is_dir() and child.name.startswith(SESSION_DIR_PREFIX) and child not in keep
                    and now - child.stat().st_mtime > older_than):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        except OSError:
            pass
    return removed


class Sweeper:
    """Calls ``sweep`` every ``interval`` seconds on a daemon thread, from :meth:`start` to :meth:`stop`
    (the app starts it with the server, through a FastAPI lifespan)."""

    def __init__(self, sweep: Callable[[], None], interval: float) -> None:
        self.sweep = sweep
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="steadydancer-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                log.exception("session sweep failed")
