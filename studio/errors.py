"""What the user sees when something goes wrong: the package's user errors as they are, anything
else as a short message (the traceback goes to the server log) -- never a raw traceback, never a hang."""

from __future__ import annotations

import functools
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
    unexpected into a short message plus a traceback in the server log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except SteadyDancerInputError as exc:
            raise gr.Error(str(exc), title="Please check the input", print_exception=False) from exc
        except MissingWeightsError as exc:
            raise gr.Error(str(exc), title="Generation is not available here", print_exception=False) from exc
        except GenerationCancelled as exc:
            raise gr.Error("Generation cancelled.", title="Cancelled", print_exception=False) from exc
        except PreviewCancelled as exc:
            raise gr.Error("Preview cancelled.", title="Cancelled", print_exception=False) from exc
        except ClientGone as exc:  # nobody is listening any more: stop quietly
            log.info("%s stopped: its client disconnected", fn.__name__)
            raise gr.Error("Stopped: the client disconnected.", print_exception=False) from exc
        except SessionsFull as exc:
            raise gr.Error(str(exc), title="The server is busy", print_exception=False) from exc
        except MemoryError as exc:
            raise gr.Error("Out of memory. Try a lower resolution, fewer frames or the low-VRAM preset.",
                           title="Out of memory", print_exception=False) from exc
        except Exception as exc:  # a bug: keep the traceback for the log, show a short message
            if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
                raise gr.Error("The GPU ran out of memory. Try 480p, fewer frames or the low-VRAM "
                               "preset.", title="Out of GPU memory", print_exception=False) from exc
            log.error("unexpected error in %s:\n%s", fn.__name__, traceback.format_exc())
            raise gr.Error(f"Something went wrong ({type(exc).__name__}: {exc}). This is a bug in the "
                           "app; the server log has the details.", title="Unexpected error",
                           print_exception=False) from exc

    return wrapper
