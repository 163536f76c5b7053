"""The pipeline's denoising loop against the official sampler's golden run (fixture README items 15-16).

The latent-level tensors of the fixture (``context``, both CLIP features, ``y``, ``condition``,
``ref_x``, ``ref_c``, the initial ``noise``, ``context_null``, ``condition_null``) go through
:func:`steadydancer.scheduling.denoise` -- the very loop ``SteadyDancerPipeline.__call__`` runs --
with the scheduler built as the pipeline builds it. Sampling parameters are read from
``sampling.json``. The fixture folder is ``$STEADYDANCER_REFERENCE_FIXTURE`` when set, else
``tests/fixtures/reference``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
from steadydancer.scheduling import (
    DenoisingInputs,
    build_scheduler,
    condition_guidance_active,
    denoise,
    set_schedule,
)

pytestmark = pytest.mark.reference

FIXTURE = Path(os.environ.get("STEADYDANCER_REFERENCE_FIXTURE") or Path(__file__).parent / "fixtures" / "reference")
#: The README's recommended sampling tolerance for a float32 port.
ATOL, RTOL = 2e-5, 1e-6


def _require_fixture():
    if not (FIXTURE / "sampling_expected.safetensors").is_file():
        pytest.fail(f"reference sampling fixture not found at {FIXTURE}: the copy in tests/fixtures ships with the "
                    "repository, and STEADYDANCER_REFERENCE_FIXTURE must name a complete set")


@pytest.fixture(scope="module")
def params() -> dict:
    _require_fixture()
    return json.loads((FIXTURE / "sampling.json").read_text())


@pytest.fixture(scope="module")
def expected() -> dict:
    _require_fixture()
    return load_file(FIXTURE / "sampling_expected.safetensors")


@pytest.fixture(scope="module")
def model():
    _require_fixture()
    return SteadyDancerTransformer3DModel.from_pretrained(FIXTURE, torch_dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def fixture_inputs() -> tuple[DenoisingInputs, torch.Tensor]:
    _require_fixture()
    inputs = load_file(FIXTURE / "inputs.safetensors")
    sampling = load_file(FIXTURE / "sampling_inputs.safetensors")
    denoising_inputs = DenoisingInputs(
        prompt_embeds=inputs["context"][None],
        negative_prompt_embeds=sampling["context_null"][None],
        image_embeds=inputs["clip_fea_x"].float(),
        pose_image_embeds=inputs["clip_fea_c"].float(),
        image_condition=inputs["y"][None],
        pose_latents=inputs["condition"][None],
        negative_pose_latents=sampling["condition_null"][None],
        ref_image_latents=inputs["ref_x"][None],
        ref_pose_latents=inputs["ref_c"][None],
    )
    return denoising_inputs, sampling["noise"][None]


def _scheduler(params):
    assert params["sample_solver"] == "unipc"
    scheduler = build_scheduler("unipc", params["shift"])
    set_schedule(scheduler, params["sampling_steps"], "unipc")
    return scheduler


def test_schedule_matches_official_bit_for_bit(params, expected):
    scheduler = _scheduler(params)
    assert scheduler.timesteps.dtype == torch.int64
    assert torch.equal(scheduler.timesteps, expected["timesteps"])
    assert torch.equal(scheduler.sigmas, expected["sigmas"])
    assert scheduler.timesteps.tolist() == params["timesteps"]


def test_condition_window_is_strict_as_official(params):
    steps = params["sampling_steps"]
    window = (params["st_cond_cfg"], params["end_cond_cfg"])
    three_pass = [i for i in range(steps) if condition_guidance_active(i, steps, window)]
    assert three_pass == params["three_pass_steps"]


def _run(model, scheduler, params, fixture_inputs, batch_passes: bool):
    inputs, noise = fixture_inputs
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["hidden_states"].shape[0]),
                                             with_kwargs=True)
    steps: list[torch.Tensor] = []
    try:
        final = denoise(
            model,
            scheduler,
            noise,
            inputs,
            guidance_scale=params["guide_scale"],
            condition_guidance_scale=params["condition_guide_scale"],
            condition_window=(params["st_cond_cfg"], params["end_cond_cfg"]),
            generator=torch.Generator("cpu").manual_seed(params["generator_seed"]),
            batch_passes=batch_passes,
            on_step_end=lambda i, t, latents: steps.append(latents.clone()),
        )
    finally:
        handle.remove()
    return final, torch.cat(steps), calls


@pytest.mark.parametrize("batch_passes", [True, False], ids=["batched_passes", "sequential_passes"])
def test_sampling_matches_official(model, params, expected, fixture_inputs, batch_passes):
    final, steps, calls = _run(model, _scheduler(params), params, fixture_inputs, batch_passes)

    torch.testing.assert_close(steps, expected["latents"], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(final[0], expected["latent_final"], atol=ATOL, rtol=RTOL)

    # Two passes per step, three in the condition window: one batched call, or one call per pass.
    passes = [3 if i in params["three_pass_steps"] else 2 for i in range(params["sampling_steps"])]
    if batch_passes:
        assert calls == passes
    else:
        assert calls == [1] * sum(passes)
