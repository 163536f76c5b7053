"""Stopping the server politely: every client still waiting for a result is told why it will not
come, then the server closes.

Without this, a stopped server (Ctrl-C, a Space restarting: SIGTERM) cancels the result streams and
a client sees an empty ``CancelledError``. Here SIGTERM is handled like Ctrl-C, and before closing,
each waiting event gets the usual error message of a failed event (what ``gr.Error`` sends), so the
browser shows it and gradio_client raises ``AppError`` with it.

This puts messages into Gradio's queue (``Queue.pending_event_ids_session`` /
``pending_messages_per_session``, on the server's event loop), which is not a public API:
``tests/test_app_load.py::test_gradio_queue_internals_used_for_disconnects`` pins it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from typing import Optional

log = logging.getLogger("steadydancer.app")

#: What a client waiting for a preview or a generation is told when the server stops.
SHUTDOWN_MESSAGE = ("The server is shutting down (restarting or stopped by its operator); this request will not "
                    "finish. Try again in a minute.")


def announce_shutdown(blocks, loop: Optional[asyncio.AbstractEventLoop], message: str = SHUTDOWN_MESSAGE,
                      timeout: float = 2.0) -> int:
    """Send ``message`` as the failed result of every pending event; returns how many were told."""
    if loop is None or loop.is_closed():
        return 0
    from gradio.server_messages import ProcessCompletedMessage

    queue = blocks._queue

    async def tell() -> int:
        told = 0
        for session_hash, event_ids in list(queue.pending_event_ids_session.items()):
            messages = queue.pending_messages_per_session.get(session_hash)
            if messages is None:
                continue
            for event_id in list(event_ids):
                messages.put_nowait(ProcessCompletedMessage(
                    output={"error": message, "title": "Server stopped", "visible": True}, success=False,
                    event_id=event_id))
                told += 1
        return told

    try:
        return asyncio.run_coroutine_threadsafe(tell(), loop).result(timeout=timeout)
    except Exception:  # never block a shutdown
        log.warning("could not tell the waiting clients about the shutdown", exc_info=True)
        return 0


def serve_until_stopped(blocks, studio, grace_seconds: float = 1.0) -> None:
    """Block until Ctrl-C or SIGTERM (after ``launch(prevent_thread_lock=True)``), then tell waiting
    clients, give their streams ``grace_seconds`` to send it, and close the server."""
    if threading.current_thread() is threading.main_thread():
        def to_keyboard_interrupt(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, to_keyboard_interrupt)
    try:
        while blocks.is_running:
            time.sleep(0.1)
    except KeyboardInterrupt:
        told = announce_shutdown(blocks, getattr(studio, "server_loop", None))
        if told:
            log.info("told %d waiting request(s) that the server is stopping", told)
            time.sleep(grace_seconds)
        blocks.close()
