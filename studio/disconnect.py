"""Does anybody still wait for this event? -- so abandoned work can stop.

Gradio runs a handler in a worker thread to the end even when its client has gone: closing the
result stream (``/queue/data``) only marks the running event (``Event.alive = False``, set by
``Queue.clean_events`` when the stream sees the disconnect), a closed browser tab marks it closed
(``Event.closed``, set by the heartbeat route), and ``/cancel`` cancels the asyncio task around the
thread, not the thread. :func:`event_watch` returns a cheap check that a handler calls from its
progress callback (every frame of the pose path, every denoising step) and stops on.

This reads Gradio's queue (``Blocks._queue.active_jobs``, ``Event._id/alive/closed``), which is not a
public API: ``tests/test_app_load.py::test_gradio_queue_internals_used_for_disconnects`` pins it.
"""

from __future__ import annotations

from typing import Callable


class ClientGone(Exception):
    """Raised inside a handler whose client disconnected: the work stops, nobody gets a result."""


def _find_event(blocks, event_id: str):
    queue = getattr(blocks, "_queue", None)
    for job in list(getattr(queue, "active_jobs", None) or []):
        for event in list(job or []):
            if getattr(event, "_id", None) == event_id:
                return event
    return None


def event_watch() -> Callable[[], bool]:
    """Inside a Gradio event handler: a function that is True once the client that started this
    event has gone (stream closed, tab closed). Outside an event (tests, examples, the CLI) it is
    always False."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a dependency of the app
        return lambda: False
    blocks = LocalContext.blocks.get(None)
    event_id = LocalContext.event_id.get(None)
    if blocks is None or not event_id:
        return lambda: False
    event = _find_event(blocks, event_id)
    if event is None:
        return lambda: False

    def gone() -> bool:
        return (not event.alive) or bool(event.closed)

    return gone
