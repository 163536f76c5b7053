"""The page: components built from :mod:`steadydancer.settings` (ranges, steps, defaults, choices), and
the events wired from the handlers' own declarations (:func:`io_for`).

Components are kept in one dict keyed by the name of the handler parameter they feed (``num_frames``,
``num_inference_steps``, ``condition_window_start`` ...): a parameter keeps one name from the slider to the
kernel, and an event's inputs are the handler's parameters, its outputs what the handler declares.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Optional

import gradio as gr

from steadydancer import settings
from steadydancer.settings import Choice, Range

from .config import PREVIEW_CONCURRENCY, QUEUE_MAX_SIZE
from .handlers import Studio
from .inputs import APP_NUM_FRAMES, ASSETS_DIR, EXAMPLES_DIR, motion_label, project_motions
from .limits import body_limit_middleware
from .session_store import Sweeper

#: Handler parameters that are not components (the session is found from the gr.Request).
NOT_INPUTS = {"self", "progress", "request", "gr_request", "session"}

THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="sky", neutral_hue="slate", radius_size="lg")

HEADER = """
<div class="sd-header">
  <div class="sd-title">SteadyDancer studio</div>
  <div class="sd-subtitle">Animate the person in a photo with the motion of a dancer —
  first check the poses on CPU, then spend GPU time.</div>
  <ol class="sd-steps">
    <li><b>Character</b> — a photo of one person</li>
    <li><b>Motion</b> — a dance clip, or one of the project's motions</li>
    <li><b>Preview poses</b> — free, runs on CPU</li>
    <li><b>Generate</b> — runs the model on the GPU</li>
  </ol>
</div>
"""

NEGATIVE_PROMPT_HINT = ("Empty = the official negative prompt (camera shake, over-exposure, static frames, "
                        "blurred details, extra fingers, deformed limbs, messy background…)")


def io_for(fn: Callable, components: dict[str, Any]) -> tuple[list, list]:
    """An event's inputs (the handler's parameters, in order) and outputs (what it declares)."""
    names = [name for name in inspect.signature(fn).parameters if name not in NOT_INPUTS]
    return [components[name] for name in names], [components[name] for name in getattr(fn, "outputs", ())]


def slider(setting: Range, value=None, **kwargs) -> gr.Slider:
    return gr.Slider(setting.minimum, setting.maximum, value=setting.default if value is None else value,
                     step=setting.step, label=setting.label, **kwargs)


def radio(setting: Choice, value=None, **kwargs) -> gr.Radio:
    return gr.Radio([(label, key) for key, label in setting.choices.items()],
                    value=setting.default if value is None else value, label=setting.label, **kwargs)


def readable_image_errors(component: gr.Image) -> gr.Image:
    """Make an unreadable upload in ``component`` a readable gr.Error: Gradio's own preprocessing
    opens the file before the event function runs. (Wrapping the instance, not subclassing:
    Gradio writes a .pyi stub next to the module of every Component subclass.)"""
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as exc:
            name = getattr(payload, "orig_name", None) or "The character image"
            if "DecompressionBomb" in type(exc).__name__:  # Pillow refuses > 2 x MAX_IMAGE_PIXELS at open
                raise gr.Error(f"image: {name} is too large to open safely ({exc}). Resize it to at most 4000 px "
                               "on the long side and upload it again.", title="Please check the input",
                               print_exception=False) from exc
            raise gr.Error(f"image: {name} could not be read as an image ({type(exc).__name__}). Use a PNG, JPEG or "
                           "WebP photo of one person.", title="Please check the input",
                           print_exception=False) from exc

    component.preprocess = checked
    return component


def _expected(component) -> str:
    if isinstance(component, (gr.Slider, gr.Number)):
        return "a number"
    if isinstance(component, gr.Checkbox):
        return "true or false"
    if isinstance(component, (gr.Radio, gr.Dropdown)):
        return "one of " + ", ".join(repr(value) for _, value in component.choices)
    if isinstance(component, gr.Textbox):
        return "text"
    if isinstance(component, gr.Video):
        return "an uploaded video file"
    return "a valid value"


def named_input_errors(name: str, component):
    """Gradio checks a value in the component's ``preprocess`` before any handler runs: a number out
    of the slider's range ("Value -1 is less than minimum value 5."), a string for a number (an
    internal "Could not preprocess input component at index 3" with a traceback in the log). Wrapped
    here, every such mistake says which parameter and what it accepts, and logs no traceback."""
    preprocess = component.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except Exception as exc:
            shown = repr(payload) if len(repr(payload)) <= 80 else repr(payload)[:77] + "..."
            if isinstance(component, (gr.Slider, gr.Number)) and isinstance(payload, (int, float)) \
                    and not isinstance(payload, bool):
                message = f"{name} must be between {component.minimum} and {component.maximum}, got {shown}."
            else:
                message = f"{name} must be {_expected(component)}, got {shown}."
            raise gr.Error(message, title="Please check the input", print_exception=False) from exc

    component.preprocess = checked
    return component


def css() -> str:
    path = ASSETS_DIR / "app.css"
    return path.read_text() if path.is_file() else ""


def build_demo(studio: Studio) -> gr.Blocks:
    """The Blocks of ``studio`` (not yet queued; :func:`create_demo` adds the queue)."""
    config = studio.config
    motions = project_motions()
    motion_choices = [("— my video —", "")] + [(motion_label(n), n) for n in motions]
    defaults = studio.sampling_defaults(config.preset, config.default_resolution)
    c: dict[str, Any] = {}  # component name (= handler parameter) -> component

    with gr.Blocks(title="SteadyDancer studio",
                   delete_cache=(settings.GRADIO_CACHE_SWEEP_SECONDS, settings.GRADIO_CACHE_MAX_AGE_SECONDS)) as demo:
        gr.HTML(HEADER)
        c["status"] = gr.Markdown(elem_classes=["sd-status"])

        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=280):
                c["image"] = readable_image_errors(gr.Image(
                    label="1 · Character", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                    height=360, elem_id="character"))
            with gr.Column(scale=4, min_width=280):
                c["driving_video"] = gr.Video(label="2 · Driving motion", sources=["upload"], height=300,
                                              elem_id="driving", loop=True)
                c["motion"] = gr.Dropdown(motion_choices, value="", label="…or one of the project's motions",
                                          elem_id="motion", visible=len(motions) > 0)
            with gr.Column(scale=5, min_width=320):
                c["prompt"] = gr.Textbox(label="Prompt", value=settings.DEFAULT_PROMPT, lines=3, elem_id="prompt",
                                         max_length=settings.MAX_PROMPT_CHARS)
                with gr.Accordion("Negative prompt", open=False):
                    c["negative_prompt"] = gr.Textbox(value="", lines=3, show_label=False,
                                                      placeholder=NEGATIVE_PROMPT_HINT,
                                                      max_length=settings.MAX_PROMPT_CHARS)
                with gr.Accordion("Pose options", open=False):
                    c["smooth"] = slider(settings.SMOOTH, info="Removes detector jitter; 0 = off")
                    c["repair"] = gr.Checkbox(value=settings.REPAIR_DEFAULT, label="Repair corrupted frames",
                                              info="Swapped limbs, lost hands, single-frame glitches")
                    c["align_mode"] = radio(settings.ALIGN_MODE,
                                            info="Auto = the official rule unless its result is broken")
                    with gr.Row():
                        c["alignment_frame"] = gr.Number(value=settings.ALIGNMENT_FRAME.default, precision=0,
                                                         minimum=settings.ALIGNMENT_FRAME.minimum,
                                                         label=settings.ALIGNMENT_FRAME.label, info="-1 = automatic")
                        c["lead_in_frames"] = gr.Number(value=settings.LEAD_IN_FRAMES.default, precision=0,
                                                        minimum=settings.LEAD_IN_FRAMES.minimum,
                                                        label=settings.LEAD_IN_FRAMES.label,
                                                        info="From the character's own pose")
                    c["frame_rate"] = radio(settings.FRAME_RATE, elem_id="frame-rate",
                                            info="Official: a 30 fps clip plays at 16/30 = 0.53x speed")
                    c["conditioning"] = radio(settings.CONDITIONING, elem_id="conditioning",
                                              info="Official: the pose frames pass through the official video, "
                                                   "JPEG and resize steps, as the model was trained")
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    with gr.Row():
                        c["resolution"] = gr.Radio(
                            [(settings.RESOLUTION.choices.get(name, name), name) for name in config.resolutions],
                            value=config.default_resolution, label=settings.RESOLUTION.label)
                        c["preset"] = radio(settings.PRESET, value=config.preset, interactive=not config.zero_gpu,
                                            info="Fixed on this Space" if config.zero_gpu else None)
                    c["num_frames"] = slider(APP_NUM_FRAMES, elem_id="num-frames")
                    c["length_text"] = gr.Markdown(studio.length_text(APP_NUM_FRAMES.default),
                                                   elem_classes=["sd-hint"])
                    with gr.Row():
                        c["num_inference_steps"] = slider(settings.NUM_INFERENCE_STEPS, value=defaults[0])
                        c["shift"] = slider(settings.SHIFT, value=defaults[3])
                    with gr.Row():
                        c["guidance_scale"] = slider(settings.GUIDANCE_SCALE, value=defaults[1])
                        c["condition_guidance_scale"] = slider(settings.CONDITION_GUIDANCE_SCALE, value=defaults[2])
                    with gr.Row():
                        c["condition_window_start"] = slider(settings.CONDITION_WINDOW_START,
                                                             info="Fraction of the steps")
                        c["condition_window_end"] = slider(settings.CONDITION_WINDOW_END,
                                                           info="with the negative-pose pass")
                    with gr.Row():
                        c["seed"] = gr.Number(value=settings.SEED.default, precision=0, minimum=settings.SEED.minimum,
                                              maximum=settings.SEED.maximum, label=settings.SEED.label)
                        c["randomize_seed"] = gr.Checkbox(value=True, label="Randomise seed")
                    c["noise_device"] = radio(settings.NOISE_DEVICE, elem_id="noise-device",
                                              info="CPU: the same numbers on every machine")
                with gr.Row():
                    preview_btn = gr.Button("Preview poses", variant="secondary", elem_id="preview-btn")
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn", min_width=80, scale=0)
                c["estimate"] = gr.Markdown(elem_classes=["sd-hint"], elem_id="estimate")

        with gr.Tabs(selected="preview") as tabs:
            with gr.Tab("Pose preview", id="preview"):
                c["preview_video"] = gr.Video(label="Driving | extracted | aligned over the character",
                                              show_label=False, elem_id="preview-video", autoplay=True, loop=True,
                                              interactive=False, height=420)
                with gr.Row():
                    c["pose_video"] = gr.Video(label="Positive pose condition", elem_id="pose-video", loop=True,
                                               interactive=False, height=320)
                    with gr.Column():
                        c["report"] = gr.Markdown("Preview the poses to see what was extracted and repaired.",
                                                  label="Report", elem_id="repair-report")
                        c["poses_file"] = gr.File(label="poses.json (reusable with any character)",
                                                  interactive=False, height=110)
            with gr.Tab("Result", id="result"):
                with gr.Row():
                    c["result_video"] = gr.Video(label="SteadyDancer", elem_id="result-video", autoplay=True,
                                                 loop=True, interactive=False, height=460)
                    c["comparison_video"] = gr.Video(label="Driving | pose | result", elem_id="comparison-video",
                                                     loop=True, interactive=False, height=460)
                with gr.Row():
                    c["seed_used"] = gr.Number(label="Seed used", precision=0, interactive=False)
                    c["settings_used"] = gr.JSON(label="Settings used")

        example_rows = [[str(EXAMPLES_DIR / "astronaut.png"), str(entry["video"]), name]
                        for name, entry in motions.items() if entry["video"] is not None]
        if example_rows and (EXAMPLES_DIR / "astronaut.png").is_file():
            # Cached lazily: the first click on an example runs the (CPU) preview once for everybody.
            inputs, outputs = io_for(studio.preview_example, c)
            gr.Examples(example_rows, inputs=inputs, outputs=outputs, fn=studio.preview_example,
                        cache_examples=True, cache_mode="lazy", label="Examples")

        gr.Markdown(
            "Preview poses runs on the CPU and is free. Generate needs the SteadyDancer weights and a GPU "
            "(on a ZeroGPU Space it borrows one for the estimated time). Uploads up to "
            f"{settings.MAX_UPLOAD_SIZE}; driving clips up to {settings.MAX_DRIVING_SECONDS:.0f} s. Your results stay "
            "in your own session folder, deleted when you close the page (or after "
            f"{settings.SESSION_IDLE_SECONDS // 60} min unused); the copies the page shows and your uploads are "
            f"deleted within {(settings.GRADIO_CACHE_MAX_AGE_SECONDS + settings.GRADIO_CACHE_SWEEP_SECONDS) // 60} "
            "min.", elem_classes=["sd-footer"])

        # -- wiring: every event's inputs and outputs come from its handler ---------------------------
        def on(triggers, fn, **kwargs):
            inputs, outputs = io_for(fn, c)
            return gr.on(triggers, fn, inputs, outputs, **kwargs)

        private = dict(api_visibility="private", queue=False)
        preview_event = preview_btn.click(lambda: gr.Tabs(selected="preview"), None, tabs, **private).then(
            studio.preview_poses, *io_for(studio.preview_poses, c), api_name="preview_poses",
            concurrency_limit=PREVIEW_CONCURRENCY, concurrency_id="cpu")
        # The character is detected as soon as the photo arrives (a preview then only reads the clip).
        on([c["image"].change], studio.detect_character, api_visibility="private", show_progress="hidden",
           concurrency_limit=PREVIEW_CONCURRENCY, concurrency_id="cpu", trigger_mode="always_last")
        # A pose control changed after a preview: re-run only the stages it affects (user actions
        # only -- .release / .input / .submit, not .change, so examples filling values do not fire).
        on([c["smooth"].release, c["num_frames"].release, c["repair"].input, c["align_mode"].input,
            c["alignment_frame"].submit, c["alignment_frame"].blur, c["lead_in_frames"].submit,
            c["lead_in_frames"].blur, c["frame_rate"].input], studio.refresh_preview, api_visibility="private",
           concurrency_limit=PREVIEW_CONCURRENCY, concurrency_id="cpu", trigger_mode="always_last")

        gen_event = generate_btn.click(lambda: gr.Tabs(selected="result"), None, tabs, **private).then(
            studio.generate, *io_for(studio.generate, c), api_name="generate",
            concurrency_limit=studio.config.generation_slots, concurrency_id="gpu")
        # Gradio's `cancels` drops a queued event and ends a running one for the client; the work itself
        # stops at its next progress update (the session's flag, and studio.disconnect.event_watch).
        cancel_btn.click(studio.cancel_generation, *io_for(studio.cancel_generation, c),
                         cancels=[gen_event, preview_event], concurrency_limit=None, api_visibility="private")
        # A closed tab (its heartbeat stops): its session and files go now, not in Gradio's hour.
        demo.unload(studio.end_session)

        # Choosing a project motion shows its clip; uploading a clip deselects the motion.
        on([c["motion"].input], studio.show_motion, **private)
        c["driving_video"].upload(lambda: "", None, c["motion"], **private)
        on([c["driving_video"].upload], studio.check_driving, api_visibility="private", show_progress="hidden",
           concurrency_limit=None)  # reads a header: never waits behind a preview
        # ... and its frames are decoded for the first preview (which then detects from memory).
        on([c["driving_video"].upload], studio.decode_driving, api_visibility="private", show_progress="hidden",
           concurrency_limit=PREVIEW_CONCURRENCY, concurrency_id="cpu", trigger_mode="always_last")
        c["driving_video"].clear(lambda: "", None, c["motion"], **private)

        on([c["resolution"].input], studio.resolution_shift, **private)
        on([c["preset"].input], studio.sampling_defaults, **private)
        on([c["num_frames"].change], studio.length_text, **private)
        estimate_inputs, _ = io_for(studio.estimate_text, c)
        on([control.change for control in estimate_inputs] + [demo.load], studio.estimate_text, preprocess=False,
           **private)
        on([demo.load], studio.runtime_status, **private)
        for name, component in c.items():  # the image has its own readable errors
            if name != "image" and isinstance(component, gr.components.Component):
                named_input_errors(name, component)
    demo.components_by_name = c  # for tests and tools: the name -> component table
    return demo


def create_demo(studio: Studio) -> gr.Blocks:
    """The Blocks with its queue: bounded, one GPU job at a time per device (concurrency_id "gpu";
    ``--devices``: one per GPU), two CPU previews at a time (concurrency_id "cpu")."""
    blocks = build_demo(studio)
    blocks.queue(max_size=QUEUE_MAX_SIZE, default_concurrency_limit=1)
    return blocks


#: What examples/ may serve: its media, not its scripts or notes.
EXAMPLE_MEDIA_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".mp4", ".webm"}

#: Said with a refused request body (a photo sent inline instead of uploaded).
INLINE_FILE_HINT = "Send files as uploads (gradio_client's handle_file does this), not inline in the request."


def example_media() -> list[str]:
    """The files of examples/ the page shows (photos, clips): the only ones served from there."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in EXAMPLE_MEDIA_SUFFIXES)


def server_lifespan(studio: Studio):
    """A FastAPI lifespan: the session sweep runs on a timer while the server runs; at shutdown every
    session is closed (its folder removed)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        import asyncio

        studio.server_loop = asyncio.get_running_loop()  # studio.shutdown tells waiting clients through it
        sweeper = Sweeper(studio.sweep, studio.config.session_sweep_seconds)
        sweeper.start()
        try:
            yield
        finally:
            sweeper.stop()
            studio.sessions.close_all()

    return lifespan


def launch_kwargs(studio: Optional[Studio] = None, **overrides) -> dict:
    """Everything ``launch()`` needs, built fresh for each launch (Gradio edits ``app_kwargs``): theme,
    upload limit, a body limit on every other route, the example media and (with ``studio``) its
    session folder root as the only paths served besides Gradio's cache, and the session sweep."""
    app_kwargs = {"middleware": [body_limit_middleware(settings.MAX_UPLOAD_BYTES, settings.MAX_REQUEST_BODY_BYTES,
                                                       hint=INLINE_FILE_HINT)]}
    allowed = example_media()
    if studio is not None:
        studio.config.tmp_root.mkdir(parents=True, exist_ok=True)
        allowed.append(str(studio.config.tmp_root))
        app_kwargs["lifespan"] = server_lifespan(studio)
    kwargs = dict(theme=THEME, css=css(), max_file_size=settings.MAX_UPLOAD_SIZE, allowed_paths=allowed,
                  show_error=True, footer_links=["api"], app_kwargs=app_kwargs)
    kwargs.update(overrides)
    return kwargs
