"""Memory / speed presets, LoRA loading, attention backend and the first-block cache, on CPU with
the tiny pipeline (loaded through steadydancer.generation.load_pipeline, as the CLI and app do)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from steadydancer.errors import MissingWeightsError, SteadyDancerInputError
from steadydancer.generation import generate_video, load_pipeline
from steadydancer.presets import PRESETS, LoraSpec, apply_preset, get_preset, load_lora
from tests.tiny_pipeline import load_tiny_pipeline, shared_tiny_pipeline_path, tiny_inputs

DIM = 24  # tiny transformer width
FFN = 32


def write_official_lora(path, rank=4, alpha=2.0, seed=0, down="lora_down", up="lora_up") -> dict:
    """A tiny LoRA in the official Wan key format (``diffusion_model.blocks.N.<module>.lora_down/up``,
    ``alpha``), every attention and FFN matrix of both blocks; returns the tensors written."""
    g = torch.Generator().manual_seed(seed)
    shapes = {
        **{f"self_attn.{m}": (DIM, DIM) for m in "qkvo"},
        **{f"cross_attn.{m}": (DIM, DIM) for m in ("q", "k", "v", "o", "k_img", "v_img")},
        "ffn.0": (DIM, FFN),
        "ffn.2": (FFN, DIM),
    }
    tensors = {}
    for block in range(2):
        for module, (fan_in, fan_out) in shapes.items():
            key = f"diffusion_model.blocks.{block}.{module}"
            tensors[f"{key}.{down}.weight"] = torch.randn(rank, fan_in, generator=g) * 0.2
            tensors[f"{key}.{up}.weight"] = torch.randn(fan_out, rank, generator=g) * 0.2
            if alpha is not None:
                tensors[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(tensors, str(path))
    return tensors


def lora_delta(tensors, key, rank=4, alpha=2.0, down="lora_down", up="lora_up"):
    scale = (alpha / rank) if alpha is not None else 1.0
    return scale * tensors[f"diffusion_model.{key}.{up}.weight"] @ tensors[f"diffusion_model.{key}.{down}.weight"]


def run(pipe, num_frames=5, **kwargs):
    image, positive, negative = tiny_inputs(num_frames)
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(image, positive, negative, prompt="a person dancing", max_area=32 * 32,
                generator=torch.Generator().manual_seed(0), **kwargs).frames


def count_calls(pipe):
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: calls.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    return calls, handle


@pytest.fixture(scope="module")
def reference_frames():
    return run(load_tiny_pipeline())


def test_preset_names():
    assert set(PRESETS) == {"quality", "balanced", "low_vram", "fast", "small_gpu"}
    assert get_preset("low-vram") is PRESETS["low_vram"]
    assert get_preset("small-gpu") is PRESETS["small_gpu"]
    with pytest.raises(SteadyDancerInputError, match="quality, balanced, low_vram, fast, small_gpu"):
        get_preset("turbo")


def test_quality_preset_on_cpu(reference_frames):
    pipe = load_pipeline(shared_tiny_pipeline_path(), preset="quality", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    frames = run(pipe)
    assert np.isfinite(frames).all()
    np.testing.assert_allclose(frames, reference_frames, atol=0.05)  # bf16 vs float32


def test_balanced_preset_stores_the_transformer_in_fp8(reference_frames):
    pipe = load_pipeline(shared_tiny_pipeline_path(), preset="balanced", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    block = pipe.transformer.blocks[0]
    assert block.attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert block.ffn.net[0].proj.weight.dtype == torch.float8_e4m3fn
    assert pipe.transformer.patch_embedding_fuse.weight.dtype == torch.bfloat16  # skipped: stays bf16
    assert pipe.transformer.dtype == torch.bfloat16  # compute dtype
    frames = run(pipe)
    assert np.isfinite(frames).all()
    np.testing.assert_allclose(frames, reference_frames, atol=0.1)  # fp8 weights of a random tiny model


def test_low_vram_preset_offloads_groups_tiles_and_runs_passes_one_by_one(reference_frames):
    pipe = load_pipeline(shared_tiny_pipeline_path(), preset="low_vram", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.batch_guidance_passes is False
    assert pipe.vae.use_tiling
    assert hasattr(pipe.transformer.blocks[0].attn1.to_q, "_diffusers_hook")  # group offloading hooks
    calls, handle = count_calls(pipe)
    frames = run(pipe, num_inference_steps=4)
    handle.remove()
    assert calls == [1] * (2 * 4 + 1)
    assert np.isfinite(frames).all()


def test_fast_preset_fuses_the_distillation_lora_and_runs_one_pass_per_step(tmp_path, monkeypatch):
    tensors = write_official_lora(tmp_path / "distill.safetensors")
    monkeypatch.setenv("STEADYDANCER_FAST_LORA", str(tmp_path / "distill.safetensors"))
    plain = load_tiny_pipeline()
    pipe = load_pipeline(shared_tiny_pipeline_path(), preset="fast", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    expected = plain.transformer.blocks[1].attn2.add_k_proj.weight.to(torch.float32)
    expected = expected + lora_delta(tensors, "blocks.1.cross_attn.k_img")
    fused = pipe.transformer.blocks[1].attn2.add_k_proj.weight.float()
    torch.testing.assert_close(fused, expected, atol=2e-2, rtol=2e-2)  # weights are bf16
    assert not any("lora" in name for name, _ in pipe.transformer.named_parameters())

    calls, handle = count_calls(pipe)
    image, positive, negative = tiny_inputs(5)
    frames = generate_video(pipe, image, positive, negative, seed=1, max_area=32 * 32)
    handle.remove()
    assert calls == [1, 1, 1, 1]  # 4 steps, CFG 1, no condition pass
    assert len(frames) == 5 and frames[0].dtype == np.uint8


@pytest.mark.parametrize("down, up, alpha", [("lora_down", "lora_up", 2.0), ("lora_A", "lora_B", None)])
def test_lora_in_official_key_format_is_loaded_and_fused(tmp_path, down, up, alpha):
    tensors = write_official_lora(tmp_path / "lora.safetensors", down=down, up=up, alpha=alpha)
    pipe = load_tiny_pipeline()
    before = {name: p.detach().clone() for name, p in pipe.transformer.named_parameters()}
    unfused_pipe = load_tiny_pipeline()
    load_lora(unfused_pipe, LoraSpec(str(tmp_path / "lora.safetensors")), fuse=False)
    unfused = run(unfused_pipe)

    load_lora(pipe, str(tmp_path / "lora.safetensors"))
    params = dict(pipe.transformer.named_parameters())
    for official, ours in [
        ("blocks.0.self_attn.q", "blocks.0.attn1.to_q"),
        ("blocks.1.self_attn.o", "blocks.1.attn1.to_out.0"),
        ("blocks.0.cross_attn.v_img", "blocks.0.attn2.add_v_proj"),
        ("blocks.1.ffn.0", "blocks.1.ffn.net.0.proj"),
        ("blocks.0.ffn.2", "blocks.0.ffn.net.2"),
    ]:
        expected = before[f"{ours}.weight"] + lora_delta(tensors, official, alpha=alpha, down=down, up=up)
        torch.testing.assert_close(params[f"{ours}.weight"], expected, atol=1e-5, rtol=1e-5)
    # Fused and unfused adapters give the same video.
    np.testing.assert_allclose(run(pipe), unfused, atol=1e-5)


def test_missing_fast_lora_offline_says_what_to_download(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("STEADYDANCER_FAST_LORA", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeightsError) as error:
        load_lora(load_tiny_pipeline(), PRESETS["fast"].lora, offline=True)
    message = str(error.value)
    assert "hf download lightx2v/Wan2.1-Distill-Loras" in message
    assert "STEADYDANCER_FAST_LORA" in message and "HF_HUB_OFFLINE" in message


def test_attention_backend_choice(reference_frames):
    pipe = load_tiny_pipeline()
    apply_preset(pipe, "quality", "cpu", attention_backend="native")
    np.testing.assert_allclose(run(pipe), reference_frames, atol=1e-6)
    with pytest.raises(SteadyDancerInputError, match="attention backend"):
        apply_preset(load_tiny_pipeline(), "quality", "cpu", attention_backend="warp-drive")


def test_first_block_cache_skips_the_other_blocks():
    pipe = load_tiny_pipeline()
    computed = []
    pipe.transformer.blocks[1].ffn.register_forward_pre_hook(lambda m, a: computed.append(1))
    run(pipe, num_inference_steps=6)
    assert len(computed) == 6
    computed.clear()
    apply_preset(pipe, "quality", "cpu", first_block_cache=1e9)  # any change counts as "unchanged"
    run(pipe, num_inference_steps=6)
    # Steps 0 (two passes) and 1 (first three-pass step: its own cache context) compute; the rest reuse.
    assert len(computed) == 2
