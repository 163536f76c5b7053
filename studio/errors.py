"""What the user sees when something goes wrong: the package's user errors as they are, anything
else as a short message (the traceback goes to the server log) -- never a raw traceback, never a hang."""

from __future__ import annotations

import functools
import inspect
import logging
import traceback
from typing import Callable

import gradio as gr

from steadydancer.errors import MissingWeightsError, SteadyDancerInputError

from .disconnect import ClientGone
from .session_store import SessionsFull

log = logging.getLogger("steadydancer.app")


class GenerationCancelled(Exception):
    """Raised from the step callback when the user pressed Cancel."""


class PreviewCancelled(Exception):
    """Raised from the pose path's progress callback when the user pressed Cancel."""


def user_errors(fn: Callable) -> Callable:
    """Turn the package's user-facing errors into ``gr.Error`` (shown as they are) and anything
    unexpected into a short message plus a traceback in the server log. A generator handler
    (one that streams results) stays a generator, its errors translated the same way."""

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _shown(exc, fn) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _shown(exc, fn) from exc

    return wrapper


def _shown(exc: Exception, fn: Callable) -> gr.Error:
    """The ``gr.Error`` the user sees for ``exc`` (the caller raises it from ``exc``)."""
    if isinstance(exc, SteadyDancerInputError):
        return gr.Error(str(exc), title="Please check the input", print_exception=False)
    if isinstance(exc, MissingWeightsError):
        return gr.Error(str(exc), title="Generation is not available here", print_exception=False)
    if isinstance(exc, GenerationCancelled):
        return gr.Error("Generation cancelled.", title="Cancelled", print_exception=False)
    if isinstance(exc, PreviewCancelled):
        return gr.Error("Preview cancelled.", title="Cancelled", print_exception=False)
    if isinstance(exc, ClientGone):  # nobody is listening any more: stop quietly
        log.info("%s stopped: its client disconnected", fn.__name__)
        return gr.Error("Stopped: the client disconnected.", print_exception=False)
    if isinstance(exc, SessionsFull):
        return gr.Error(str(exc), title="The server is busy", print_exception=False)
    if isinstance(exc, MemoryError):
        return gr.Error("Out of memory. Try a lower resolution, fewer frames or the low-VRAM preset.",
                        title="Out of memory", print_exception=False)
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        return gr.Error("The GPU ran out of memory. Try 480p, fewer frames or the low-VRAM "
                        "preset.", title="Out of GPU memory", print_exception=False)
    # a bug: keep the traceback for the log, show a short message
    log.error("unexpected error in %s:\n%s", fn.__name__, traceback.format_exc())
    return gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). This is a bug in the "
                    "app; the server log has the details.", title="Unexpected error", print_exception=False)
