"""End-to-end parity with the official SteadyDancer pipeline (golden run in ``fixtures/official_pipeline``).

The product's own loader reads the fixture's official-format checkpoint folder ``ckpt/``
(``SteadyDancerPipeline.from_checkpoint``: transformer + T5 / CLIP / VAE ``.pth`` + tokenizer,
nothing downloaded), the inputs are read as the official entry point reads them (PIL, RGB; the
pose frames are handed over at their own size, the pipeline does the official resizes), and the
product's ``SteadyDancerPipeline`` runs in float32 on the CPU with the official initial ``noise``
injected and every argument taken from ``generate.json``. Intermediates are captured from the
outside only: forward hooks on the text encoder, the CLIP tower and the transformer, a wrapper
around ``vae.encode``, and the pipeline's ``callback_on_step_end``. Every tensor of
``expected.safetensors`` is compared within the tolerance ``noise_floor.json`` suggests for it (token
ids and timesteps exactly); a tensor a set lacks is skipped by name.

The set is ``$STEADYDANCER_PIPELINE_FIXTURE`` when set, else ``tests/fixtures/official_pipeline``.
``python tests/test_official_pipeline.py`` prints the max abs difference of every tensor.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

pytestmark = [pytest.mark.reference, pytest.mark.slow]

FIXTURE = Path(os.environ.get("STEADYDANCER_PIPELINE_FIXTURE")
               or Path(__file__).parent / "fixtures" / "official_pipeline")

#: Every golden tensor this harness knows how to produce, in pipeline order.
TENSORS = (
    "noise", "context", "context_null", "clip_input_x_crop", "clip_fea_x", "clip_fea_c",
    "vae_input_ref", "vae_input_pose_first", "vae_input_pose_neg_first", "y", "condition", "condition_null",
    "ref_x", "ref_c", "pred_cond_step0", "pred_uncond_context_step0", "pred_cond_step1",
    "pred_uncond_condition_step1", "pred_uncond_context_step1", "latent_after_first_step",
    "latent_after_last_step", "latents_all_steps", "video",
)
#: Rows / columns of the 224 x 224 CLIP input kept in ``clip_input_x_crop``.
CLIP_CROP = (slice(96, 128), slice(96, 128))
#: Official defaults of the arguments a set may leave out (constructor / ``generate`` signatures).
OFFICIAL_DEFAULTS = {"st_cond_cfg": 0.1, "end_cond_cfg": 0.5, "condition_guide_scale": 2.0}
PASS_NAMES = {("prompt", "pose"): "cond", ("negative", "pose"): "uncond_context",
              ("prompt", "negative_pose"): "uncond_condition"}


def _require_fixture():
    if not (FIXTURE / "expected.safetensors").is_file():
        pytest.fail(f"official pipeline fixture not found at {FIXTURE}: the copy in tests/fixtures ships with the "
                    "repository, and STEADYDANCER_PIPELINE_FIXTURE must name a complete set")


# ---------------------------------------------------------------------------------------- inputs
def read_inputs(folder: Path, spec: dict) -> dict:
    """The inputs as the official entry point reads them: the reference and every pose frame opened
    with PIL and converted to RGB; prompts read verbatim (UTF-8)."""
    generate = spec["generate_kwargs"]
    frames = generate["frame_num"]
    rgb = lambda path: Image.open(path).convert("RGB")  # noqa: E731
    inputs = {
        "image": rgb(folder / "inputs" / "ref.png"),
        "pose": [rgb(folder / "inputs" / "pose" / f"{i:04d}.png") for i in range(frames)],
        "pose_neg": [rgb(folder / "inputs" / "pose_neg" / f"{i:04d}.png") for i in range(frames)],
        "prompt": (folder / "inputs" / "prompt.txt").read_text(encoding="utf-8"),
        "negative_prompt": None,  # the official config's default (the product's default too)
    }
    if "n_prompt" in generate and (folder / "inputs" / "negative_prompt.txt").is_file():
        inputs["negative_prompt"] = (folder / "inputs" / "negative_prompt.txt").read_text(encoding="utf-8")
    return inputs


def load_product_pipeline(folder: Path, spec: dict):
    """The fixture's ``ckpt/`` through the product's loader, float32. The tiny CLIP's head count is
    not in its weights (the official code hard-codes it), so it comes from ``generate.json``."""
    from steadydancer.pipeline import SteadyDancerPipeline

    clip_heads = spec.get("tiny_constructors", {}).get("clip", {}).get("vision_heads")
    return SteadyDancerPipeline.from_checkpoint(folder / "ckpt", torch_dtype=torch.float32, offline=True,
                                                clip_heads=clip_heads)


# ---------------------------------------------------------------------------------------- the run
def run_product(folder: Path = FIXTURE, **call_overrides) -> dict:
    """Run the product pipeline on a fixture set; returns every captured intermediate by golden name,
    plus ``token_ids``, ``timesteps`` and ``model_calls_per_step``. ``call_overrides``: other pipeline
    arguments (to measure the product's options against the official path)."""
    spec = json.loads((folder / "generate.json").read_text())
    expected = load_file(folder / "expected.safetensors")
    generate, init = spec["generate_kwargs"], spec.get("init_kwargs", {})
    pipe = load_product_pipeline(folder, spec)
    inputs = read_inputs(folder, spec)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    records = {"token_ids": [], "clip_in": [], "clip_out": [], "vae_in": [], "transformer": [], "steps": []}
    hooks = [
        pipe.text_encoder.register_forward_pre_hook(
            lambda module, args, kwargs: records["token_ids"].append(
                (kwargs.get("input_ids", args[0] if args else None).clone(),
                 kwargs.get("attention_mask", args[1] if len(args) > 1 else None).clone())),
            with_kwargs=True),
        pipe.image_encoder.register_forward_pre_hook(
            lambda module, args, kwargs: records["clip_in"].append(kwargs.get("pixel_values", args[0] if args else None)),
            with_kwargs=True),
        pipe.image_encoder.register_forward_hook(
            lambda module, args, output: records["clip_out"].append(output.hidden_states[-2].clone())),
        pipe.transformer.register_forward_hook(
            lambda module, args, kwargs, output: records["transformer"].append(
                ({k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}, output[0].clone())),
            with_kwargs=True),
    ]
    encode = pipe.vae.encode

    def recording_encode(x, *args, **kwargs):
        records["vae_in"].append(x.clone())
        return encode(x, *args, **kwargs)

    def on_step_end(pipeline, step, timestep, tensors):
        records["steps"].append((int(timestep), tensors["latents"].clone(), tensors["prompt_embeds"].clone(),
                                 tensors["negative_prompt_embeds"].clone()))
        return {}

    pipe.vae.encode = recording_encode
    frame_num = generate["frame_num"]
    try:
        frames = pipe(
            inputs["image"], inputs["pose"], inputs["pose_neg"],
            prompt=inputs["prompt"], negative_prompt=inputs["negative_prompt"],
            max_area=generate["max_area"], num_frames=frame_num,
            num_inference_steps=generate["sampling_steps"], shift=generate["shift"],
            solver=generate["sample_solver"], guidance_scale=generate["guide_scale"],
            condition_guidance_scale=generate.get("condition_guide_scale", OFFICIAL_DEFAULTS["condition_guide_scale"]),
            condition_window=(init.get("st_cond_cfg", OFFICIAL_DEFAULTS["st_cond_cfg"]),
                                       init.get("end_cond_cfg", OFFICIAL_DEFAULTS["end_cond_cfg"])),
            window_frames=frame_num, generator=torch.Generator().manual_seed(generate["seed"]),
            latents=expected["noise"][None], output_type="pt",
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "negative_prompt_embeds"],
            **call_overrides,
        ).frames
    finally:
        del pipe.vae.encode
        for hook in hooks:
            hook.remove()
    return _assemble(records, frames, pipe)


def _assemble(records: dict, frames: torch.Tensor, pipe) -> dict:
    out: dict = {}
    # Text: token ids (trimmed to the mask), contexts as given to the transformer (trimmed; the
    # rows beyond the tokens must be zero, which is the official zero-padding to text_len).
    (ids, mask), (neg_ids, neg_mask) = records["token_ids"][:2]
    out["token_ids"] = {"prompt_ids": ids[0, : int(mask[0].sum())].tolist(),
                        "negative_prompt_ids": neg_ids[0, : int(neg_mask[0].sum())].tolist(),
                        "padded_length": ids.shape[1]}
    _, _, prompt_embeds, negative_embeds = records["steps"][0]
    out["context"] = prompt_embeds[0, : int(mask[0].sum())]
    out["context_null"] = negative_embeds[0, : int(neg_mask[0].sum())]
    padding = torch.cat([prompt_embeds[0, int(mask[0].sum()):], negative_embeds[0, int(neg_mask[0].sum()):]])
    out["context_padding_max"] = float(padding.abs().max()) if padding.numel() else 0.0

    # CLIP: one batch [reference, first pose frame].
    pixels, hidden = records["clip_in"][0], records["clip_out"][0]
    out["clip_input_x_crop"] = pixels[0:1, :, CLIP_CROP[0], CLIP_CROP[1]]

    # VAE inputs: the y video (reference + zero frames), the two one-frame videos [reference, pose 0],
    # then the positive and the negative pose videos (the pipeline encodes them in that order).
    one_frame = [x for x in records["vae_in"] if x.shape[2] == 1]
    videos = [x for x in records["vae_in"] if x.shape[2] > 1]
    y_video = [x for x in videos if not x[:, :, 1:].any()]
    poses = [x for x in videos if x[:, :, 1:].any()]
    out["vae_input_ref"] = one_frame[0][0]
    out["vae_input_pose_first"] = one_frame[0][1]
    out["vae_input_y_first_equals_ref"] = bool(y_video and torch.equal(y_video[0][0, :, :1], one_frame[0][0]))
    if len(poses) > 1:
        out["vae_input_pose_neg_first"] = poses[1][0, :, :1]

    # Transformer calls: split batched passes, name each sample by its text and pose inputs.
    timesteps = [t for t, *_ in records["steps"]]
    out["timesteps"] = timesteps
    condition = records["transformer"][0][0]["pose_latents"][0]
    calls_per_step: dict[int, int] = {}
    for kwargs, output in records["transformer"]:
        step = timesteps.index(int(kwargs["timestep"].reshape(-1)[0]))
        for b in range(output.shape[0]):
            text = "prompt" if torch.equal(kwargs["encoder_hidden_states"][b], prompt_embeds[0]) else "negative"
            pose = "pose" if torch.equal(kwargs["pose_latents"][b], condition) else "negative_pose"
            name = PASS_NAMES[(text, pose)]
            calls_per_step[step] = calls_per_step.get(step, 0) + 1
            out.setdefault(f"pred_{name}_step{step}", output[b])
            if step == 0 and b == 0:
                out["noise_in"] = kwargs["hidden_states"][0]
                out["clip_fea_x"] = kwargs["encoder_hidden_states_image"][0:1]
                out["clip_fea_c"] = kwargs["encoder_hidden_states_image_pose"][0:1]
                out["y"] = kwargs["image_condition"][0]
                out["condition"] = kwargs["pose_latents"][0]
                out["ref_x"] = kwargs["ref_image_latents"][0]
                out["ref_c"] = kwargs["ref_pose_latents"][0]
            if pose == "negative_pose":
                out.setdefault("condition_null", kwargs["pose_latents"][b])
    out["model_calls_per_step"] = [calls_per_step[i] for i in range(len(timesteps))]
    out["clip_tower_x"] = hidden[0:1]

    # Sampling and decoding.
    latents = torch.stack([latent[0] for _, latent, *_ in records["steps"]])
    out["latents_all_steps"] = latents
    out["latent_after_first_step"] = latents[0]
    out["latent_after_last_step"] = latents[-1]
    out["noise"] = out["noise_in"]
    # The product's output ([1, F, 3, H, W] in [0, 1]) back to the official [3, F, H, W] in [-1, 1].
    out["video"] = frames[0].permute(1, 0, 2, 3) * 2 - 1
    return out


# ---------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def spec() -> dict:
    _require_fixture()
    return json.loads((FIXTURE / "generate.json").read_text())


@pytest.fixture(scope="module")
def expected() -> dict:
    _require_fixture()
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def tolerances() -> dict:
    _require_fixture()
    return json.loads((FIXTURE / "noise_floor.json").read_text())


@pytest.fixture(scope="module")
def produced() -> dict:
    _require_fixture()
    return run_product(FIXTURE)


def tolerance(tolerances: dict, name: str) -> float:
    """The suggested absolute tolerance of ``name`` (per tensor, else its group's)."""
    per_tensor = tolerances.get("per_tensor", {})
    if name in per_tensor and "suggested_atol" in per_tensor[name]:
        return float(per_tensor[name]["suggested_atol"])
    raise AssertionError(f"noise_floor.json gives no tolerance for {name}")


def max_abs_difference(actual: torch.Tensor, golden: torch.Tensor) -> float:
    assert tuple(actual.shape) == tuple(golden.shape), f"shape {list(actual.shape)} vs golden {list(golden.shape)}"
    return float((actual.double() - golden.double()).abs().max()) if golden.numel() else 0.0


@pytest.mark.parametrize("name", TENSORS)
def test_intermediate_matches_official(name, produced, expected, tolerances):
    if name not in expected:
        pytest.skip(f"{name} not in this fixture set")
    assert name in produced, f"the product run produced no {name}"
    atol = tolerance(tolerances, name)
    difference = max_abs_difference(produced[name].float(), expected[name])
    assert difference <= atol, f"{name}: max abs difference {difference:.3g} > tolerance {atol:.3g}"


def test_token_ids_exact(produced):
    path = FIXTURE / "tokens.json"
    if not path.is_file():
        pytest.skip("tokens.json not in this fixture set")
    assert produced["token_ids"] == json.loads(path.read_text())


def test_schedule_and_passes_exact(produced, spec):
    derived = spec.get("derived", {})
    if "timesteps" not in derived:
        pytest.skip("timesteps not in this fixture set")
    assert produced["timesteps"] == derived["timesteps"]
    if "model_calls_per_step" in derived:
        assert produced["model_calls_per_step"] == derived["model_calls_per_step"]
    if "three_pass_steps" in derived:
        assert [i for i, n in enumerate(produced["model_calls_per_step"]) if n == 3] == derived["three_pass_steps"]


def test_official_path_structure(produced, spec):
    """What the README states about the official path, checked on the product's run: the text
    context is zero beyond its tokens, the y video starts with the reference, the decoded video
    stays in [-1, 1], and the output has the derived size."""
    assert produced["context_padding_max"] == 0.0
    assert produced["vae_input_y_first_equals_ref"]
    assert float(produced["video"].abs().max()) <= 1.0 + 1e-6
    derived = spec.get("derived", {})
    if "pixel_hw" in derived:
        assert list(produced["video"].shape[2:]) == derived["pixel_hw"]
    if "latent_shape" in derived:
        assert list(produced["latent_after_last_step"].shape) == derived["latent_shape"]


def _report(folder: Path = FIXTURE) -> None:
    produced = run_product(folder)
    expected = load_file(folder / "expected.safetensors")
    tolerances = json.loads((folder / "noise_floor.json").read_text())
    print(f"{'tensor':30s} {'max abs diff':>12s} {'tolerance':>10s}")
    for name in TENSORS:
        if name in expected:
            difference = max_abs_difference(produced[name].float(), expected[name])
            print(f"{name:30s} {difference:12.3g} {tolerance(tolerances, name):10.3g}")
    tokens = json.loads((folder / "tokens.json").read_text())
    print("token ids identical:", produced["token_ids"] == tokens)
    print("timesteps identical:", produced["timesteps"] == json.loads((folder / "generate.json").read_text())
          ["derived"]["timesteps"])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _report(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE)
