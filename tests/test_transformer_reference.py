"""The transformer against golden tensors of the official SteadyDancer model (see the fixture README).

The fixture folder is ``$STEADYDANCER_REFERENCE_FIXTURE`` when set (any folder with the same layout;
intermediates a set lacks are skipped), else ``tests/fixtures/reference``. The model is loaded
through the real loader (official config + official key names), as a user's checkpoint would be.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel, capture_intermediates

pytestmark = pytest.mark.reference

FIXTURE = Path(os.environ.get("STEADYDANCER_REFERENCE_FIXTURE") or Path(__file__).parent / "fixtures" / "reference")
ATOL, RTOL = 5e-6, 1e-6

#: Every tensor the official run can record; ``[B, ...]`` here unless marked unbatched in the fixture.
UNBATCHED_IN_FIXTURE = {
    "output", "output_all_frames", "condition_temporal", "condition_spatial", "condition_fused", "condition_aligned",
}
TENSOR_NAMES = [
    "output", "output_all_frames", "grid_sizes", "condition_temporal", "condition_spatial", "condition_fused",
    "condition_aligned", "hidden_states_pre_blocks", "hidden_states_block0", "temb", "timestep_proj",
    "text_context", "image_context",
]


def _require_fixture():
    if not (FIXTURE / "expected.safetensors").is_file():
        pytest.fail(f"reference fixture not found at {FIXTURE}: the copy in tests/fixtures ships with the "
                    "repository, and STEADYDANCER_REFERENCE_FIXTURE must name a complete set")


def fixture_forward_kwargs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official call ``model(x=[x], t=t, context=[context], ...)`` in this model's batched names."""
    return {
        "hidden_states": inputs["x"][None],
        "timestep": inputs["t"],
        "encoder_hidden_states": inputs["context"][None],
        "encoder_hidden_states_image": inputs["clip_fea_x"].float(),
        "encoder_hidden_states_image_pose": inputs["clip_fea_c"].float(),
        "image_condition": inputs["y"][None],
        "pose_latents": inputs["condition"][None],
        "ref_image_latents": inputs["ref_x"][None],
        "ref_pose_latents": inputs["ref_c"][None],
    }


@pytest.fixture(scope="module")
def model():
    _require_fixture()
    return SteadyDancerTransformer3DModel.from_pretrained(FIXTURE)


@pytest.fixture(scope="module")
def inputs():
    _require_fixture()
    return load_file(FIXTURE / "inputs.safetensors")


@pytest.fixture(scope="module")
def expected():
    _require_fixture()
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def computed(model, inputs):
    output, intermediates = capture_intermediates(model, **fixture_forward_kwargs(inputs))
    return {"output": output, **intermediates}


@pytest.mark.parametrize("name", TENSOR_NAMES)
def test_matches_official(name, computed, expected):
    if name not in expected:
        pytest.skip(f"{name} not in this fixture set")
    want = expected[name]
    got = computed[name][0] if name in UNBATCHED_IN_FIXTURE else computed[name]
    assert tuple(got.shape) == tuple(want.shape)
    if name == "grid_sizes":
        assert got.tolist() == want.tolist()
        return
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)


def test_every_fixture_tensor_is_checked(expected):
    # A new intermediate in a fixture set must not go unchecked silently.
    assert set(expected) <= set(TENSOR_NAMES)


def test_loaded_in_eval_mode_with_official_config(model):
    import json

    official = json.loads((FIXTURE / "config.json").read_text())
    config = model.config
    assert not model.training
    assert config.patch_size == tuple(official.get("patch_size", (1, 2, 2)))
    assert config.num_attention_heads * config.attention_head_dim == official["dim"]
    assert (config.in_channels, config.out_channels, config.pose_channels) == (
        official["in_dim"], official["out_dim"], official["in_dim_c"],
    )
    assert (config.text_len, config.text_dim) == (official["text_len"], official.get("text_dim", 4096))


def test_int64_timestep_matches_float(model, inputs, computed):
    kwargs = fixture_forward_kwargs(inputs)
    if not torch.equal(inputs["t"], inputs["t"].round()):
        pytest.skip("the fixture timestep is not a whole number")
    kwargs["timestep"] = inputs["t"].to(torch.int64)
    with torch.no_grad():
        output = model(**kwargs).sample
    assert torch.equal(output, computed["output"])


def test_batched_samples_equal_batch_one(model, inputs):
    """Three different samples in one batch give each sample's batch-1 result (the official alignment
    unit would attend across the samples' frames)."""
    base = fixture_forward_kwargs(inputs)
    generator = torch.Generator().manual_seed(7)
    samples = []
    for i in range(3):
        sample = {k: v.clone() for k, v in base.items()}
        if i:
            for name in ("hidden_states", "pose_latents", "encoder_hidden_states", "image_condition"):
                sample[name] = sample[name] + 0.5 * torch.randn(sample[name].shape, generator=generator)
            sample["timestep"] = sample["timestep"] - 100.0 * i
        samples.append(sample)
    batched = {k: torch.cat([s[k] for s in samples]) for k in base}
    with torch.no_grad():
        singles = [model(**s).sample for s in samples]
        together = model(**batched).sample
    assert together.shape[0] == 3
    for i, single in enumerate(singles):
        torch.testing.assert_close(together[i : i + 1], single, atol=1e-6, rtol=0)
    # The samples really differ, so a mixing bug could not hide.
    assert (singles[0] - singles[1]).abs().max() > 1e-2


def test_batch_one_conditions_broadcast(model, inputs):
    """Conditions shared by the guidance passes may be given once (batch 1)."""
    base = fixture_forward_kwargs(inputs)
    batched = dict(base)
    batched["hidden_states"] = torch.cat([base["hidden_states"], base["hidden_states"]])
    batched["encoder_hidden_states"] = torch.cat([base["encoder_hidden_states"], torch.zeros_like(base["encoder_hidden_states"])])
    with torch.no_grad():
        together = model(**batched).sample
        first = model(**base).sample
        second = model(**{**base, "encoder_hidden_states": torch.zeros_like(base["encoder_hidden_states"])}).sample
    torch.testing.assert_close(together[:1], first, atol=1e-6, rtol=0)
    torch.testing.assert_close(together[1:], second, atol=1e-6, rtol=0)


def test_explicit_zero_padding_of_text_is_the_same(model, inputs, computed):
    # The model pads to text_len with zeros; a caller that pads itself gets the same result.
    kwargs = fixture_forward_kwargs(inputs)
    text = kwargs["encoder_hidden_states"]
    kwargs["encoder_hidden_states"] = torch.nn.functional.pad(text, (0, 0, 0, model.config.text_len - text.shape[1]))
    with torch.no_grad():
        output = model(**kwargs).sample
    assert torch.equal(output, computed["output"])


def test_ref_pose_with_sixteen_channels(model, inputs, computed):
    kwargs = fixture_forward_kwargs(inputs)
    kwargs["ref_pose_latents"] = kwargs["ref_pose_latents"][:, :16]
    with torch.no_grad():
        output = model(**kwargs).sample
    assert torch.equal(output, computed["output"])


def test_math_attention_backend_agrees(model, inputs, computed):
    kwargs = fixture_forward_kwargs(inputs)
    model.set_attention_backend("_native_math")
    try:
        with torch.no_grad():
            output = model(**kwargs).sample
    finally:
        model.reset_attention_backend()
    torch.testing.assert_close(output, computed["output"], atol=ATOL, rtol=RTOL)
