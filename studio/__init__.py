"""SteadyDancer studio, the Gradio app: ``app.py`` is its entry point (and the Space's ``app_file``).

    config.py    where the weights come from, where files go, ZeroGPU, the service limits
    inputs.py    the user's files and values, checked once against steadydancer.settings
    sessions.py  per-session folders and the pose-stage cache
    handlers.py  the event handlers (class Studio), each declaring its outputs
    runtime.py   the GPU side: pipeline, missing-weights check, estimate, @spaces.GPU run_generation
    layout.py    the page, built from the settings table; events wired from the handlers' declarations

Holding under load (what a server keeps, for how long; README "Limits and privacy"):

    session_store.py  sessions bounded in number and idle time, swept on a timer
    working_image.py  the working-size copy of the photo a session keeps
    disconnect.py     is anybody still waiting for this event? (stops abandoned work)
    limits.py         request body limits for every route (an ASGI middleware)
    memory.py         freed memory given back to the system after each event
    shutdown.py       a stopping server tells every waiting client why

It imports ``steadydancer``, never the reverse, and loads torch only when a generation needs it.
"""

from .config import AppConfig
from .handlers import Studio
from .layout import build_demo, create_demo, launch_kwargs

__all__ = ["AppConfig", "Studio", "build_demo", "create_demo", "launch_kwargs"]
