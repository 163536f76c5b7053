"""A GGUF transformer file in the pipeline: --model x.gguf through resolve_weights / load_pipeline /
the CLI, group offloading of packed weights, and the small_gpu preset, on the CPU at tiny size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steadydancer.errors import MissingWeightsError, SteadyDancerInputError
from steadydancer.generation import load_pipeline
from steadydancer.pipeline import SteadyDancerPipeline
from steadydancer.weights import resolve_weights
from steadydancer.presets import apply_preset, is_gguf_transformer
from tests.gguf_files import build_gguf_test_transformer, write_community_gguf
from tests.test_cli_generate import run_cli
from tests.test_gguf_loading import exact_weights, float_model, forward, inputs, load
from tests.tiny_pipeline import shared_tiny_pipeline_path, tiny_inputs


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf-model") / "SteadyDancer-tiny-Q8_0.gguf"
    write_community_gguf(build_gguf_test_transformer(), path, "Q8_0")
    return path


def run(pipe, num_frames=5, steps=2):
    image, positive, negative = tiny_inputs(num_frames)
    return pipe(image, positive, negative, prompt="a person dancing", max_area=32 * 32, num_inference_steps=steps,
                generator=torch.Generator().manual_seed(0)).frames


def test_resolve_weights_takes_a_gguf_file(gguf_path, tmp_path):
    location = resolve_weights(gguf_path, shared_tiny_pipeline_path(), offline=True)
    assert location.transformer_file == gguf_path and location.encoders_dir == shared_tiny_pipeline_path()
    assert location.transformer_dir is None and location.pipeline_dir is None
    with pytest.raises(MissingWeightsError, match="no file .*absent.gguf"):
        resolve_weights(tmp_path / "absent.gguf", shared_tiny_pipeline_path(), offline=True)
    with pytest.raises(MissingWeightsError, match="hf download MCG-NJU/SteadyDancer-GGUF x.gguf"):
        resolve_weights("MCG-NJU/SteadyDancer-GGUF::x.gguf", shared_tiny_pipeline_path(), offline=True,
                        cache_dir=tmp_path)
    with pytest.raises(MissingWeightsError, match="has no encoders and none were given"):
        resolve_weights(gguf_path, None, offline=True)


def test_group_offloading_moves_packed_weights_and_keeps_the_output(gguf_path):
    from diffusers.quantizers.gguf.utils import GGUFParameter

    model, data = load(gguf_path), inputs()
    expected = forward(model, data)
    model.enable_group_offload(torch.device("cpu"), offload_type="leaf_level")
    assert hasattr(model.blocks[0].attn1.to_q, "_diffusers_hook")
    torch.testing.assert_close(forward(model, data), expected, rtol=0, atol=0)
    assert isinstance(model.blocks[0].attn1.to_q.weight, GGUFParameter)  # still packed after the round trip


def test_small_gpu_preset_runs_the_gguf_pipeline(gguf_path):
    pipe = load_pipeline(gguf_path, preset="small_gpu", device="cpu", offline=True,
                         encoders=shared_tiny_pipeline_path())
    pipe.set_progress_bar_config(disable=True)
    assert is_gguf_transformer(pipe.transformer) and pipe.batch_guidance_passes is False and pipe.vae.use_tiling
    for component in (pipe.transformer.blocks[0].ffn.net[0].proj, pipe.text_encoder.encoder.block[0].layer[0]):
        assert any(hasattr(m, "_diffusers_hook") for m in component.modules())  # group offloading hooks
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["hidden_states"].shape[0]),
                                                        with_kwargs=True)
    frames = run(pipe, steps=4)
    handle.remove()
    assert calls == [1] * (2 * 4 + 1) and np.isfinite(frames).all()

    # The same pipeline with the exactly dequantized weights in float32: bf16 + float16 decoding apart, equal.
    reference = SteadyDancerPipeline.from_pretrained(shared_tiny_pipeline_path())
    reference.transformer = float_model(exact_weights(gguf_path))
    reference.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(frames, run(reference, steps=4), atol=0.05)


def test_presets_that_need_float_weights_refuse_a_gguf_transformer(gguf_path):
    with pytest.raises(SteadyDancerInputError, match="small_gpu preset runs a GGUF transformer file"):
        load_pipeline(shared_tiny_pipeline_path(), preset="small_gpu", device="cpu", offline=True)
    pipe = SteadyDancerPipeline.from_checkpoint(gguf_path, shared_tiny_pipeline_path(), offline=True)
    assert is_gguf_transformer(pipe.transformer)
    for preset, what in (("balanced", "fp8 storage"), ("fast", "LoRA")):
        with pytest.raises(SteadyDancerInputError, match=what):
            apply_preset(pipe, preset, "cpu")


@pytest.mark.slow
def test_cli_generate_with_a_gguf_model(gguf_path, tmp_path, astronaut_path, repo_root):
    out = tmp_path / "video.mp4"
    poses = repo_root / "examples" / "dance_keyframes.poses.json"  # saved poses: no detector run
    proc = run_cli("generate", "--image", astronaut_path, "--video", poses, "--out", out,
                   "--model", gguf_path, "--encoders", shared_tiny_pipeline_path(), "--preset", "small-gpu",
                   "--device", "cpu", "--offline", "--frames", 5, "--steps", 2, "--max-area", 32 * 32, "--seed", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    # Without a GGUF file small_gpu is refused before the pose path (no pose file is even read).
    proc = run_cli("generate", "--image", astronaut_path, "--video", tmp_path / "never-read.mp4", "--out",
                   tmp_path / "v.mp4", "--model", shared_tiny_pipeline_path(), "--preset", "small-gpu",
                   "--device", "cpu", "--offline")
    assert proc.returncode == 2 and "small_gpu preset runs a GGUF transformer file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_app_loads_a_gguf_model(gguf_path):
    """The app's --model takes a .gguf file (encoders from --encoders), as the CLI does."""
    from studio import AppConfig
    from studio import runtime

    config = AppConfig.from_env().replace(model=str(gguf_path), encoders=str(shared_tiny_pipeline_path()),
                                          offline=True, device="cpu")
    assert runtime._local_transformer_bytes(config) == gguf_path.stat().st_size
    try:
        pipe = runtime.get_pipeline(config, "small_gpu")
        assert is_gguf_transformer(pipe.transformer) and pipe.config["preset"] == "small_gpu"
    finally:
        runtime._PIPELINES.clear()


def test_gguf_file_with_the_official_folders_encoders(tmp_path, monkeypatch):
    """The encoders of a GGUF transformer may be the official folder's own .pth files: the folder the
    file sits in, or --encoders."""
    import shutil

    from steadydancer.models import official_encoders as oe
    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel
    from tests.test_official_encoders import CKPT, TINY_CLIP_HEADS

    official = tmp_path / "SteadyDancer-14B"
    shutil.copytree(CKPT, official)
    transformer = SteadyDancerTransformer3DModel.from_pretrained(str(official), torch_dtype=torch.float32)
    separate = tmp_path / "gguf" / "SteadyDancer-Q8_0.gguf"
    write_community_gguf(transformer, separate, "Q8_0")
    location = resolve_weights(separate, official, offline=True)
    assert location.transformer_file == separate and location.official_encoders_dir == official
    inside = official / "SteadyDancer-Q8_0.gguf"
    shutil.copy(separate, inside)
    assert resolve_weights(inside, None, offline=True).official_encoders_dir == official

    monkeypatch.setitem(oe.CLIP_HEADS_BY_WIDTH, 32, TINY_CLIP_HEADS)  # the tiny width, as the real 1280 -> 16
    pipe = load_pipeline(separate, preset="small_gpu", device="cpu", offline=True, encoders=official)
    assert is_gguf_transformer(pipe.transformer) and type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
