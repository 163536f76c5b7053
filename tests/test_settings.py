"""The one table of defaults and limits (steadydancer.settings): the checks it does, and that every
control of the app, every CLI option and the pipeline's signature are read from it."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steadydancer import settings
from steadydancer.errors import SteadyDancerInputError
from steadydancer.settings import Choice, Range

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Every setting of the table, by its parameter name.
TABLE = {value.name: value for value in vars(settings).values() if isinstance(value, (Range, Choice))}


def test_range_check_names_the_parameter_and_its_limits():
    assert settings.NUM_INFERENCE_STEPS.check("12") == 12
    with pytest.raises(SteadyDancerInputError, match=r"num_inference_steps \(Steps\) must be between 1 and 100, got 0"):
        settings.NUM_INFERENCE_STEPS.check(0)
    with pytest.raises(SteadyDancerInputError, match="num_inference_steps .* whole number"):
        settings.NUM_INFERENCE_STEPS.check(2.5)
    with pytest.raises(SteadyDancerInputError, match="guidance_scale .* must be a number, got 'lots'"):
        settings.GUIDANCE_SCALE.check("lots")
    with pytest.raises(SteadyDancerInputError, match="finite"):
        settings.SHIFT.check(float("nan"))
    with pytest.raises(SteadyDancerInputError, match="must be a number, got True"):
        settings.SMOOTH.check(True)
    assert settings.PRESET.check("Low-VRAM") == "low_vram"
    with pytest.raises(SteadyDancerInputError, match="preset .* must be one of quality, balanced, low_vram, fast"):
        settings.PRESET.check("turbo")


def test_flags_are_parsed_one_way(monkeypatch):
    assert settings.check_flag("repair", "no") is False and settings.check_flag("repair", "true") is True
    assert settings.check_flag("repair", 0) is False and settings.check_flag("repair", True) is True
    with pytest.raises(SteadyDancerInputError, match="repair must be true or false"):
        settings.check_flag("repair", "perhaps")
    for value, expected in (("1", True), ("on", True), ("0", False), ("false", False), ("", False)):
        monkeypatch.setenv("SOME_FLAG", value)
        assert settings.env_flag("SOME_FLAG") is expected
    monkeypatch.setenv("SOME_FLAG", "maybe")  # never silently "on"
    with pytest.raises(SteadyDancerInputError, match="SOME_FLAG"):
        settings.env_flag("SOME_FLAG")
    monkeypatch.delenv("SOME_FLAG")
    assert settings.env_flag("SOME_FLAG", default=True) is True


def test_sampling_settings_precedence_and_checks():
    official = settings.SamplingSettings.resolve("quality")
    assert (official.num_inference_steps, official.guidance_scale, official.condition_guidance_scale,
            official.condition_window, official.solver, official.shift) == (40, 5.0, 1.0, (0.1, 0.4), "unipc", None)
    fast = settings.SamplingSettings.resolve("fast")
    assert (fast.num_inference_steps, fast.guidance_scale, fast.solver) == (4, 1.0, "lcm")
    assert settings.SamplingSettings.resolve("fast", num_inference_steps=8).num_inference_steps == 8
    assert official.shift_for(480, 832) == 3.0 and official.shift_for(576, 1024) == 5.0
    with pytest.raises(SteadyDancerInputError, match="condition_window ends"):
        settings.SamplingSettings.resolve(None, condition_window=(0.5, 0.2))
    with pytest.raises(SteadyDancerInputError, match="solver"):
        settings.SamplingSettings.resolve(None, solver="ddim")


def test_frames_to_generate_is_the_one_length_rule():
    assert settings.frames_to_generate(None, 100) == 97  # everything, rounded down to 4n+1
    assert settings.frames_to_generate(81, 60) == 57  # clipped to the motion first
    assert settings.frames_to_generate(33, 100) == 33
    with pytest.raises(SteadyDancerInputError, match="only 4 frames"):
        settings.frames_to_generate(None, 4)
    assert settings.frames_to_generate(None, 3, minimum=1) == 1


def test_pipeline_signature_defaults_come_from_the_table():
    from steadydancer.pipeline import SteadyDancerPipeline

    params = inspect.signature(SteadyDancerPipeline.__call__).parameters
    for name in ("num_inference_steps", "guidance_scale", "condition_guidance_scale", "window_frames",
                 "window_overlap", "solver"):
        assert params[name].default == TABLE[name].default, name
    assert params["condition_window"].default == (settings.CONDITION_WINDOW_START.default,
                                                  settings.CONDITION_WINDOW_END.default)


def test_cli_options_are_read_from_the_table():
    from steadydancer.cli import build_parser

    parser = build_parser()
    generate = parser._subparsers._group_actions[0].choices["generate"]
    actions = {a.dest: a for a in generate._actions}
    for name in ("num_inference_steps", "guidance_scale", "condition_guidance_scale", "condition_window_start",
                 "condition_window_end", "shift", "num_frames", "seed", "smooth", "lead_in_frames",
                 "alignment_frame", "fps", "align_mode", "preset", "resolution"):
        assert name in actions, f"generate has no option for {name}"
        assert "--" + name.replace("_", "-") in actions[name].option_strings or name in ("align_mode",)
    assert tuple(actions["align_mode"].choices) == tuple(settings.ALIGN_MODE.choices)
    assert actions["smooth"].default == settings.SMOOTH.default and actions["seed"].default == settings.SEED.default
    assert actions["resolution"].default == settings.RESOLUTION.default


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from studio import AppConfig, Studio, build_demo

    config = AppConfig.from_env().replace(model=str(tmp_path_factory.mktemp("none")), offline=True, device="cpu",
                                          zero_gpu=False, tmp_root=tmp_path_factory.mktemp("sessions"))
    return build_demo(Studio(config))


def test_every_ui_control_matches_the_table(demo):
    import gradio as gr

    from studio.inputs import APP_NUM_FRAMES

    controls = demo.components_by_name
    checked = set()
    for name, component in controls.items():
        setting = APP_NUM_FRAMES if name == "num_frames" else TABLE.get(name)
        if setting is None:
            continue
        if isinstance(component, gr.Slider):
            assert (component.minimum, component.maximum, component.step) == (
                setting.minimum, setting.maximum, setting.step), name
            if setting.default is not None and name not in ("num_inference_steps", "guidance_scale",
                                                            "condition_guidance_scale"):  # preset's values
                assert component.value == setting.default, name
            assert component.label == setting.label, name
        elif isinstance(component, gr.Radio):
            values = [value for _, value in component.choices]
            if name == "resolution":  # the table's classes (plus any --resolution the app was given)
                assert values[: len(setting.choices)] == list(setting.choices)
            else:
                assert values == list(setting.choices), name
        elif isinstance(component, gr.Number):
            assert component.minimum == setting.minimum and component.value == setting.default, name
        checked.add(name)
    assert checked >= {"num_frames", "num_inference_steps", "guidance_scale", "condition_guidance_scale",
                       "condition_window_start", "condition_window_end", "shift", "smooth", "align_mode",
                       "alignment_frame", "lead_in_frames", "preset", "resolution", "seed"}


def test_event_inputs_are_the_handler_parameters(demo):
    """Every event's inputs are built from its handler's signature: the public endpoints' parameter
    names are exactly the handler's, in order."""
    from studio import Studio
    from studio.layout import NOT_INPUTS  # self, progress, the gr.Request and the session it finds

    for fn in demo.fns.values():
        if fn.api_name not in ("preview_poses", "generate"):
            continue
        handler = getattr(Studio, fn.api_name)
        signature = [p for p in inspect.signature(handler).parameters if p != "self"]
        params = [p for p in signature if p not in NOT_INPUTS]
        assert signature[:len(params)] == params  # Gradio passes the inputs positionally: they come first
        assert params[-1] == {"preview_poses": "frame_rate", "generate": "noise_device"}[fn.api_name]
        names = {id(c): n for n, c in demo.components_by_name.items()}
        assert [names[id(block)] for block in fn.inputs] == params
        assert [names[id(block)] for block in fn.outputs] == list(handler.outputs)


def test_the_app_starts_without_torch(tmp_path):
    """Importing the app and building its page loads neither torch, diffusers nor transformers."""
    code = ("import sys, app\nfrom studio import AppConfig, Studio, build_demo\n"
            "build_demo(Studio(AppConfig.from_env()))\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'mediapipe') if m in sys.modules))")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "GRADIO_EXAMPLES_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_no_module_imports_another_modules_private_names():
    """Project modules talk through public names only."""
    import ast

    offenders = []
    for path in list((REPO_ROOT / "steadydancer").rglob("*.py")) + list((REPO_ROOT / "studio").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            ours = isinstance(node, ast.ImportFrom) and (
                node.level > 0 or (node.module or "").split(".")[0] in ("steadydancer", "studio"))
            if ours:  # (a library's private API is pinned by a test where it is used)
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                if private:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}: {node.module} {private}")
    assert not offenders, offenders
