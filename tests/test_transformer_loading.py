"""Loading the transformer: official folder (single / sharded), single files (prefixes, naming, fp8
scaled), own save_pretrained output, dtypes, clear errors; and the diffusers features the pipeline
uses (LoRA in official key format, layerwise casting, first-block cache). Tiny models built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from steadydancer.errors import SteadyDancerInputError
from steadydancer.models.loading import (
    OFFICIAL_CONFIG_DEFAULTS,
    SteadyDancerCheckpointError,
    convert_official_key,
    convert_to_official_key,
    diffusers_config_to_official,
    official_config_to_diffusers,
    official_state_dict,
    save_official_checkpoint,
)
from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel

FIXTURE = Path(__file__).parent / "fixtures" / "reference"

TINY = dict(num_attention_heads=2, attention_head_dim=16, text_dim=24, text_len=8, freq_dim=16, ffn_dim=48, num_layers=2)


def default_config() -> dict:
    """The constructor defaults (the released 14B model), without building anything."""
    import inspect

    parameters = inspect.signature(SteadyDancerTransformer3DModel.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def tiny_model(seed: int = 0, **overrides) -> SteadyDancerTransformer3DModel:
    """A small random model; every parameter moved off its default so a lost tensor shows."""
    torch.manual_seed(seed)
    model = SteadyDancerTransformer3DModel(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model


def tiny_inputs(model, batch_size: int = 1, frames: int = 3, height: int = 4, width: int = 4, seed: int = 1):
    config = model.config
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    return {
        "hidden_states": randn(batch_size, config.out_channels, frames, height, width),
        "timestep": torch.full((batch_size,), 700, dtype=torch.int64),
        "encoder_hidden_states": randn(batch_size, 5, config.text_dim),
        "encoder_hidden_states_image": randn(batch_size, 257, config.image_dim),
        "encoder_hidden_states_image_pose": randn(batch_size, 257, config.image_dim),
        "image_condition": randn(batch_size, config.in_channels - config.out_channels, frames, height, width),
        "pose_latents": randn(batch_size, config.pose_channels, frames, height, width),
        "ref_image_latents": randn(batch_size, config.in_channels, 1, height, width),
        "ref_pose_latents": randn(batch_size, config.in_channels, 1, height, width),
    }


def run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).sample


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def assert_fully_loaded(model):
    assert not any(p.is_meta for p in model.parameters())
    assert not any(b.is_meta for b in model.buffers())
    assert model.rope.freqs_cos.dtype == torch.float32  # the RoPE table is never cast to bf16
    assert not model.training


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# ------------------------------------------------------------------------------------- key mapping
def test_key_mapping_round_trips_every_key(model):
    for name in model.state_dict():
        official = convert_to_official_key(name)
        assert official is not None, name
        assert convert_official_key(official) == name


def test_official_names_and_shapes_match_the_official_model():
    # keys.txt lists every tensor of the official model (names, shapes) for the fixture config.
    official = json.loads((FIXTURE / "config.json").read_text())
    with torch.device("meta"):
        model = SteadyDancerTransformer3DModel(**official_config_to_diffusers(official))
    listed = {}
    for line in (FIXTURE / "keys.txt").read_text().splitlines():
        key, shape, _ = line.split("\t")
        listed[key] = json.loads(shape)
    ours = {key: list(t.shape) for key, t in official_state_dict(model).items()}
    assert ours == listed


def test_unknown_official_key_is_not_mapped():
    assert convert_official_key("blocks.0.self_attn.alpha") is None
    assert convert_official_key("vace_blocks.0.proj.weight") is None


# ------------------------------------------------------------------------------------------ config
def test_official_config_defaults_for_omitted_keys():
    official = {k: v for k, v in diffusers_config_to_official(default_config()).items()
                if k not in ("patch_size", "qk_norm", "cross_attn_norm", "text_dim", "window_size")}
    config = official_config_to_diffusers(official)
    assert config["patch_size"] == (1, 2, 2)
    assert config["text_dim"] == 4096 and config["cross_attn_norm"] is True
    assert config["num_attention_heads"] * config["attention_head_dim"] == 5120


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "t2v"}, "image-to-video"),
        ({"window_size": [256, 256]}, "window_size"),
        ({"qk_norm": False}, "qk_norm"),
        ({"num_heads": 3}, "divisible"),
        ({"vace_layers": [0, 2]}, "Unknown keys"),
    ],
)
def test_official_config_rejects_other_variants(change, message):
    official = {**OFFICIAL_CONFIG_DEFAULTS, "model_type": "i2v", **change}
    with pytest.raises(SteadyDancerCheckpointError, match=message):
        official_config_to_diffusers(official)


def test_default_config_is_the_14b_model():
    official_14b = {"model_type": "i2v", "text_len": 512, "in_dim": 36, "in_dim_c": 16, "dim": 5120, "ffn_dim": 13824,
                    "freq_dim": 256, "out_dim": 16, "num_heads": 40, "num_layers": 40, "eps": 1e-6}
    defaults = default_config()
    assert {k: defaults[k] for k in official_config_to_diffusers(official_14b)} == official_config_to_diffusers(official_14b)


# ------------------------------------------------------------------------------ formats round trip
def test_save_pretrained_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "SteadyDancerTransformer3DModel"
    loaded = SteadyDancerTransformer3DModel.from_pretrained(tmp_path)
    assert_same_weights(model, loaded)
    assert_fully_loaded(loaded)
    assert loaded.config.patch_size == (1, 2, 2)
    inputs = tiny_inputs(model)
    assert torch.equal(run(loaded, inputs), run(model, inputs))


def test_save_pretrained_sharded_with_subfolder(model, tmp_path):
    model.save_pretrained(tmp_path / "transformer", max_shard_size="300KB")
    assert len(list((tmp_path / "transformer").glob("*.safetensors"))) > 1
    loaded = SteadyDancerTransformer3DModel.from_pretrained(tmp_path, subfolder="transformer")
    assert_same_weights(model, loaded)


def test_official_sharded_folder(model, tmp_path):
    save_official_checkpoint(model, tmp_path, max_shard_size="300KB")
    shards = sorted(tmp_path.glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert "dim" in config and "num_attention_heads" not in config
    loaded = SteadyDancerTransformer3DModel.from_pretrained(tmp_path)
    assert_same_weights(model, loaded)
    assert_fully_loaded(loaded)


def test_official_folder_config_without_optional_keys(tmp_path):
    # The official class does not save patch_size, qk_norm, cross_attn_norm, text_dim, window_size.
    model = tiny_model(text_dim=4096)
    save_official_checkpoint(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("patch_size", "qk_norm", "cross_attn_norm", "text_dim", "window_size"):
        del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = SteadyDancerTransformer3DModel.from_pretrained(tmp_path)
    assert_same_weights(model, loaded)


def test_single_file_with_prefix_equals_folder(model, tmp_path):
    save_official_checkpoint(model, tmp_path / "folder")
    weights = {f"model.diffusion_model.{k}": v for k, v in official_state_dict(model).items()}
    save_file(weights, tmp_path / "repack.safetensors")
    single = SteadyDancerTransformer3DModel.from_single_file(
        tmp_path / "repack.safetensors", config=tmp_path / "folder" / "config.json"
    )
    folder = SteadyDancerTransformer3DModel.from_pretrained(tmp_path / "folder")
    assert_same_weights(single, folder)
    assert_same_weights(single, model)
    assert_fully_loaded(single)


def test_single_file_infers_the_config_from_shapes(tmp_path):
    # Wan's 128-wide heads make the head count inferable; text_len / eps are Wan's (512, 1e-6).
    model = tiny_model(num_attention_heads=1, attention_head_dim=128, text_len=512, num_layers=3, ffn_dim=40)
    save_file({f"diffusion_model.{k}": v for k, v in official_state_dict(model).items()}, tmp_path / "x.safetensors")
    loaded = SteadyDancerTransformer3DModel.from_single_file(tmp_path / "x.safetensors")
    assert_same_weights(model, loaded)
    ours = {k: v for k, v in loaded.config.items() if not k.startswith("_")}
    assert ours == {k: v for k, v in model.config.items() if not k.startswith("_")}


def test_single_file_with_project_names(model, tmp_path):
    save_file(model.state_dict(), tmp_path / "own.safetensors")
    loaded = SteadyDancerTransformer3DModel.from_single_file(tmp_path / "own.safetensors", config=dict(model.config))
    assert_same_weights(model, loaded)


def test_fixture_single_file_equals_fixture_folder():
    folder = SteadyDancerTransformer3DModel.from_pretrained(FIXTURE)
    single = SteadyDancerTransformer3DModel.from_single_file(
        FIXTURE / "diffusion_pytorch_model.safetensors", config=FIXTURE / "config.json"
    )
    assert_same_weights(folder, single)


# ------------------------------------------------------------------------------------------ dtypes
def test_dtype_casting_matches_diffusers_policy(model, tmp_path):
    """torch_dtype=bfloat16: same dtypes (fp32 kept for `_keep_in_fp32_modules`) and values whether the
    official folder goes through our loader or the own format through diffusers' loader."""
    save_official_checkpoint(model, tmp_path / "official")
    model.save_pretrained(tmp_path / "own")
    ours = SteadyDancerTransformer3DModel.from_pretrained(tmp_path / "official", torch_dtype=torch.bfloat16)
    theirs = SteadyDancerTransformer3DModel.from_pretrained(tmp_path / "own", torch_dtype=torch.bfloat16)
    assert_same_weights(ours, theirs)
    dtypes = {name: p.dtype for name, p in ours.named_parameters()}
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    assert dtypes["condition_embedding_spatial.conv.weight"] == torch.bfloat16
    for kept in ("blocks.0.scale_shift_table", "condition_embedder.time_embedder.linear_1.weight", "blocks.0.norm2.weight"):
        assert dtypes[kept] == torch.float32, kept
    assert_fully_loaded(ours)
    out = run(ours, {k: v.bfloat16() if v.is_floating_point() else v for k, v in tiny_inputs(model).items()})
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_float16_from_single_file(model, tmp_path):
    save_file({k: v.half() for k, v in official_state_dict(model).items()}, tmp_path / "fp16.safetensors")
    loaded = SteadyDancerTransformer3DModel.from_single_file(
        tmp_path / "fp16.safetensors", torch_dtype=torch.float16, config=dict(model.config)
    )
    assert loaded.proj_out.weight.dtype == torch.float16
    assert torch.equal(loaded.proj_out.weight, model.proj_out.weight.half())


def _fp8_scaled(weights: dict[str, torch.Tensor], per_row: bool) -> dict[str, torch.Tensor]:
    # ComfyUI-style "scaled" fp8: 2-D weights stored as fp8(weight / scale) + <module>.scale_weight.
    out = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for key, value in weights.items():
        if key.endswith(".weight") and value.ndim == 2 and key.startswith("blocks."):
            absmax = value.abs().amax(dim=1) if per_row else value.abs().max()
            scale = (absmax / 448.0).clamp_min(1e-12)
            out[key] = (value / (scale[:, None] if per_row else scale)).to(torch.float8_e4m3fn)
            out[key[: -len("weight")] + "scale_weight"] = scale.reshape(-1) if per_row else scale.reshape(1)
            out[key[: -len("weight")] + "scale_input"] = torch.ones(1)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("per_row", [False, True])
def test_fp8_scaled_file_is_dequantised(model, tmp_path, per_row):
    packed = _fp8_scaled(official_state_dict(model), per_row)
    save_file({f"model.diffusion_model.{k}": v for k, v in packed.items()}, tmp_path / "fp8.safetensors")
    loaded = SteadyDancerTransformer3DModel.from_single_file(
        tmp_path / "fp8.safetensors", torch_dtype=torch.float32, config=dict(model.config)
    )
    key = "blocks.1.ffn.0"
    scale = packed[f"{key}.scale_weight"]
    expected = packed[f"{key}.weight"].float() * (scale[:, None] if per_row else scale)
    assert torch.equal(loaded.blocks[1].ffn.net[0].proj.weight, expected)
    original = model.blocks[1].ffn.net[0].proj.weight
    assert (loaded.blocks[1].ffn.net[0].proj.weight - original).abs().max() <= 0.07 * original.abs().max()
    inputs = tiny_inputs(model)
    similarity = torch.nn.functional.cosine_similarity(run(loaded, inputs).flatten(), run(model, inputs).flatten(), dim=0)
    assert similarity > 0.99


def test_fp8_compute_dtype_is_refused_with_advice(model, tmp_path):
    save_file(_fp8_scaled(official_state_dict(model), False), tmp_path / "fp8.safetensors")
    with pytest.raises(SteadyDancerCheckpointError, match="enable_layerwise_casting"):
        SteadyDancerTransformer3DModel.from_single_file(
            tmp_path / "fp8.safetensors", torch_dtype=torch.float8_e4m3fn, config=dict(model.config)
        )


# ------------------------------------------------------------------------------------------ errors
def _write_single(tmp_path, weights) -> Path:
    path = tmp_path / "w.safetensors"
    save_file(weights, path)
    return path


def test_missing_key_is_listed(model, tmp_path):
    weights = official_state_dict(model)
    del weights["blocks.1.ffn.2.weight"]
    with pytest.raises(SteadyDancerCheckpointError, match=r"1 missing keys: blocks\.1\.ffn\.net\.2\.weight"):
        SteadyDancerTransformer3DModel.from_single_file(_write_single(tmp_path, weights), config=dict(model.config))


def test_unexpected_key_is_listed(model, tmp_path):
    weights = {**official_state_dict(model), "blocks.0.self_attn.extra.weight": torch.zeros(2)}
    with pytest.raises(SteadyDancerCheckpointError, match=r"unexpected keys: blocks\.0\.self_attn\.extra\.weight"):
        SteadyDancerTransformer3DModel.from_single_file(_write_single(tmp_path, weights), config=dict(model.config))


def test_shape_mismatch_is_listed(model, tmp_path):
    save_official_checkpoint(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["ffn_dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SteadyDancerCheckpointError, match=r"6 shape mismatches: .*blocks\.0\.ffn\.0\.weight \[48, 32\] \(model \[64, 32\]\)"):
        SteadyDancerTransformer3DModel.from_pretrained(tmp_path)


def test_plain_wan_checkpoint_is_recognised(model, tmp_path):
    weights = {k: v for k, v in official_state_dict(model).items()
               if not k.startswith(("patch_embedding_", "condition_embedding_"))}
    path = _write_single(tmp_path, weights)
    with pytest.raises(SteadyDancerCheckpointError, match="Wan2.1 transformer checkpoint without SteadyDancer"):
        SteadyDancerTransformer3DModel.from_single_file(path)
    with pytest.raises(SteadyDancerCheckpointError, match="Wan2.1 transformer checkpoint without SteadyDancer"):
        SteadyDancerTransformer3DModel.from_single_file(path, config=dict(model.config))


def test_folder_errors(model, tmp_path):
    with pytest.raises(SteadyDancerCheckpointError, match="No config.json"):
        SteadyDancerTransformer3DModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(diffusers_config_to_official(model.config)))
    (tmp_path / "model.pth").write_bytes(b"")
    with pytest.raises(SteadyDancerCheckpointError, match=r"No transformer weights .*model\.pth"):
        SteadyDancerTransformer3DModel.from_pretrained(tmp_path)
    with pytest.raises(SteadyDancerCheckpointError, match="from_single_file"):
        SteadyDancerTransformer3DModel.from_pretrained(tmp_path / "config.json")
    with pytest.raises(SteadyDancerCheckpointError, match="No such checkpoint file"):
        SteadyDancerTransformer3DModel.from_single_file(tmp_path / "absent.safetensors")


def test_checkpoint_errors_are_user_errors():
    assert issubclass(SteadyDancerCheckpointError, SteadyDancerInputError)


def test_forward_rejects_wrong_shapes(model):
    inputs = tiny_inputs(model)
    with pytest.raises(ValueError, match="pose_latents"):
        run(model, {**inputs, "pose_latents": inputs["pose_latents"][:, :8]})
    with pytest.raises(ValueError, match="text_len"):
        run(model, {**inputs, "encoder_hidden_states": torch.zeros(1, 9, model.config.text_dim)})
    with pytest.raises(ValueError, match="batch size 2"):
        run(model, {**inputs, "pose_latents": inputs["pose_latents"].repeat(2, 1, 1, 1, 1)})


# ---------------------------------------------------------------------- diffusers features used
def test_layerwise_casting_keeps_pose_modules_in_full_precision(tmp_path):
    model = tiny_model()
    inputs = tiny_inputs(model)
    reference = run(model, inputs)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    for full in (model.condition_embedding_align.cross_attn.in_proj_weight, model.patch_embedding_fuse.weight,
                 model.condition_embedding_temporal[0].temporal.weight, model.proj_out.weight):
        assert full.dtype == torch.float32
    cast = run(model, inputs)
    assert torch.nn.functional.cosine_similarity(cast.flatten(), reference.flatten(), dim=0) > 0.99


def test_official_format_lora_through_diffusers_matches_merged_weights(model):
    """A Wan I2V LoRA in official key format (``diffusion_model.blocks.N.self_attn.q.lora_A.weight``),
    converted by diffusers' Wan LoRA converter, targets our modules: same output as merging by hand."""
    import copy

    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    g = torch.Generator().manual_seed(3)
    dim, ffn = model.config.num_attention_heads * model.config.attention_head_dim, model.config.ffn_dim
    targets = {"self_attn.q": (dim, dim), "cross_attn.k_img": (dim, dim), "cross_attn.v_img": (dim, dim),
               "cross_attn.o": (dim, dim), "ffn.0": (ffn, dim)}
    lora = {}
    for block in range(model.config.num_layers):
        for target, (rows, cols) in targets.items():
            lora[f"diffusion_model.blocks.{block}.{target}.lora_A.weight"] = 0.1 * torch.randn(4, cols, generator=g)
            lora[f"diffusion_model.blocks.{block}.{target}.lora_B.weight"] = 0.1 * torch.randn(rows, 4, generator=g)

    merged = copy.deepcopy(model)
    state = merged.state_dict()
    for key, down in lora.items():
        if ".lora_A." in key:
            name = convert_official_key(key[len("diffusion_model."):].replace(".lora_A.weight", ".weight"))
            state[name] = state[name] + lora[key.replace(".lora_A.", ".lora_B.")] @ down
    merged.load_state_dict(state)

    with_lora = copy.deepcopy(model)
    with_lora.load_lora_adapter(_convert_non_diffusers_wan_lora_to_diffusers(dict(lora)), adapter_name="distill")
    inputs = tiny_inputs(model)
    torch.testing.assert_close(run(with_lora, inputs), run(merged, inputs), atol=2e-6, rtol=0)
    assert (run(with_lora, inputs) - run(model, inputs)).abs().max() > 1e-3


def test_first_block_cache_runs(model):
    import copy

    from diffusers.hooks import FirstBlockCacheConfig

    cached = copy.deepcopy(model)
    cached.enable_cache(FirstBlockCacheConfig(threshold=0.05))
    inputs = tiny_inputs(model)
    with cached.cache_context("cond"):
        first = run(cached, inputs)
        second = run(cached, inputs)  # same input: residual reused
    assert torch.equal(first, run(model, inputs))
    torch.testing.assert_close(second, first, atol=1e-5, rtol=0)


def test_14b_config_builds_on_meta():
    with torch.device("meta"):
        model = SteadyDancerTransformer3DModel()
    count = sum(p.numel() for p in model.parameters())
    assert 14.0e9 < count < 17.5e9
    assert len(official_state_dict(model)) == len(model.state_dict())


def test_hub_repository_id_fetches_only_the_transformer_files(model, tmp_path, monkeypatch):
    """A repository id (no local folder) is resolved with huggingface_hub: config first, then only the
    transformer weights of an official repository (network replaced by a local copy here)."""
    import huggingface_hub

    repo = tmp_path / "hub"
    save_official_checkpoint(model, repo, max_shard_size="300KB")
    calls = []

    def fake_hf_hub_download(repo_id, filename, subfolder=None, **kwargs):
        calls.append(("file", repo_id, filename, subfolder))
        return str(repo / (subfolder or "") / filename)

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append(("snapshot", repo_id, tuple(allow_patterns)))
        return str(repo)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    loaded = SteadyDancerTransformer3DModel.from_pretrained("someone/SteadyDancer-tiny", torch_dtype="bfloat16")
    assert calls[0] == ("file", "someone/SteadyDancer-tiny", "config.json", None)
    assert calls[1] == ("snapshot", "someone/SteadyDancer-tiny", ("config.json", "diffusion_pytorch_model*.safetensors*"))
    assert loaded.proj_out.weight.dtype == torch.bfloat16
    assert torch.equal(loaded.proj_out.weight, model.proj_out.weight.bfloat16())


def test_fused_qkv_projections_give_the_same_output():
    model = tiny_model()
    inputs = tiny_inputs(model)
    reference = run(model, inputs)
    model.fuse_qkv_projections()
    assert hasattr(model.blocks[0].attn2, "to_added_kv")
    torch.testing.assert_close(run(model, inputs), reference, atol=1e-6, rtol=0)


def test_lora_file_given_as_checkpoint_is_recognised(tmp_path):
    weights = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 32),
               "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(32, 4)}
    with pytest.raises(SteadyDancerCheckpointError, match="looks like a LoRA"):
        SteadyDancerTransformer3DModel.from_single_file(_write_single(tmp_path, weights))
