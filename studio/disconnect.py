"""Does anybody still wait for this event? -- so abandoned work can stop.

Gradio runs a handler in a worker thread to the end even when its client has gone: closing the
result stream (``/queue/data``) only marks the running event (``Event.alive = False``, set by
``Queue.clean_events`` when the stream sees the disconnect), a closed browser tab marks it closed
(``Event.closed``, set by the heartbeat route), and ``/cancel`` cancels the asyncio task around the
thread, not the thread. :func:`event_watch` returns a cheap check that a handler calls from its
progress callback (every frame of the pose path, every denoising step) and stops on.
``Event.closed``/``alive`` mean the client has gone; an event no longer among the running jobs was
cancelled (the Cancel button, ``Job.cancel()``).

This reads Gradio's queue (``Blocks._queue.active_jobs``, ``Event._id/alive/closed``), which is not a
public API: ``tests/test_app_load.py::test_gradio_queue_internals_used_for_disconnects`` pins it.
"""

from __future__ import annotations

from typing import Callable, Optional

DISCONNECTED = "disconnected"
CANCELLED = "cancelled"


class ClientGone(Exception):
    """Raised inside a handler whose client disconnected: the work stops, nobody gets a result."""


def _find_event(blocks, event_id: str):
    queue = getattr(blocks, "_queue", None)
    for job in list(getattr(queue, "active_jobs", None) or []):
        for event in list(job or []):
            if getattr(event, "_id", None) == event_id:
                return event
    return None


def event_watch() -> Callable[[], Optional[str]]:
    """Inside a Gradio event handler: a function that says whether anybody still waits for this
    event -- ``None`` while they do, ``"disconnected"`` once the client has gone (its result stream or
    its tab closed), ``"cancelled"`` once the event was cancelled (``/cancel``: Gradio dropped the
    event, the thread runs on). Outside an event (tests, cached examples, the CLI) always ``None``."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a dependency of the app
        return lambda: None
    blocks = LocalContext.blocks.get(None)
    event_id = LocalContext.event_id.get(None)
    if blocks is None or not event_id:
        return lambda: None
    event = _find_event(blocks, event_id)
    if event is None:
        return lambda: None

    def status() -> Optional[str]:
        if not event.alive or event.closed:
            return DISCONNECTED
        if _find_event(blocks, event_id) is None:
            return CANCELLED
        return None

    return status

