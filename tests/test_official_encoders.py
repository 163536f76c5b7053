"""The official checkpoint folder loads as-is: the T5 / CLIP / VAE ``.pth`` files into the standard
classes (tiny official-format folder of ``fixtures/official_pipeline``), the weights lookup's
"official folder" layout, nothing downloaded, and the errors that name a missing or wrong file.
(Numerical parity of the whole pipeline: ``test_official_pipeline.py``.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from steadydancer.errors import MissingWeightsError
from steadydancer.models import official_encoders as oe
from steadydancer.pipeline import SteadyDancerPipeline
from steadydancer.weights import resolve_weights

CKPT = Path(__file__).parent / "fixtures" / "official_pipeline" / "ckpt"
TINY_CLIP_HEADS = 2  # the tiny CLIP's head count (generate.json); the released ViT-H/14 has 16 at width 1280


@pytest.fixture
def official_folder(tmp_path) -> Path:
    """A writable copy of the tiny official folder (transformer + encoders + tokenizers)."""
    folder = tmp_path / "SteadyDancer-14B"
    shutil.copytree(CKPT, folder)
    return folder


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to reach the Hub (or its cache) fails the test."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download: {args} {kwargs}")

    for name in ("snapshot_download", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, refuse)


# ------------------------------------------------------------------------------------ conversions
def test_t5_config_and_table_from_shapes():
    model = oe.load_official_text_encoder(CKPT, torch.float32)
    c = model.config
    assert (c.vocab_size, c.d_model, c.d_kv, c.num_heads, c.d_ff, c.num_layers) == (64, 48, 16, 4, 96, 2)
    assert c.relative_attention_num_buckets == 32 and c.relative_attention_max_distance == 128
    assert c.dense_act_fn == "gelu_new" and c.is_gated_act  # tanh-GELU gate, as the official T5
    assert model.encoder.embed_tokens.weight is model.shared.weight
    state = oe.load_state_dict_mmap(CKPT / oe.OFFICIAL_T5_FILE)
    # Every official tensor landed where the table says, bit for bit (every layer has its own bias).
    for name, source in oe.t5_key_table(c.num_layers).items():
        assert torch.equal(model.get_parameter(name), state[source.key]), name
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_clip_vision_tower_splits_qkv_and_skips_the_text_tower():
    model = oe.load_official_image_encoder(CKPT, torch.float32, clip_heads=TINY_CLIP_HEADS)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.image_size, c.patch_size) == (32, 2, 128, 224, 14)
    assert c.hidden_act == "gelu" and c.layer_norm_eps == 1e-5 and c.num_attention_heads == TINY_CLIP_HEADS
    state = oe.load_state_dict_mmap(CKPT / oe.OFFICIAL_CLIP_FILE)
    qkv = state["visual.transformer.1.attn.to_qkv.weight"]
    layer = model.get_submodule("encoder.layers.1.self_attn")
    assert torch.equal(torch.cat([layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight]), qkv)
    assert torch.equal(model.get_parameter("embeddings.class_embedding"), state["visual.cls_embedding"].flatten())
    processor = oe.official_image_processor(c.image_size)
    assert processor.do_center_crop is False and tuple(processor.image_mean) == oe.CLIP_MEAN


def test_clip_head_count_is_required_for_an_unknown_width():
    with pytest.raises(MissingWeightsError, match="clip_heads"):
        oe.load_official_image_encoder(CKPT, torch.float32)


def test_vae_through_diffusers_own_conversion():
    # Pins diffusers' private converter: it exists and is a pure, one-to-one renaming of the keys.
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    state = oe.load_state_dict_mmap(CKPT / oe.OFFICIAL_VAE_FILE)
    renamed = convert_wan_vae_to_diffusers({key: key for key in state})
    assert sorted(renamed.values()) == sorted(state) and len(renamed) == len(state)
    vae = oe.load_official_vae(CKPT)
    assert vae.config.base_dim == 4 and vae.config.z_dim == 16
    assert len(vae.state_dict()) == len(state)
    assert vae.config.latents_mean[:2] == [-0.7571, -0.7089]  # the official wrapper's constants
    assert torch.equal(vae.decoder.conv_out.weight, state["decoder.head.2.weight"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_text_encoder_loads_in_the_requested_dtype(dtype):
    model = oe.load_official_text_encoder(CKPT, dtype)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    if dtype == torch.float16:  # transformers keeps T5's `wo` in float32 for float16
        assert all(d == torch.float32 for n, d in dtypes.items() if ".wo." in n)
        assert all(d == dtype for n, d in dtypes.items() if ".wo." not in n)
    else:
        assert set(dtypes.values()) == {dtype}


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path.resolve())):
                start, stop = line.split()[0].split("-")
                ranges.append((int(start, 16), int(stop, 16)))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
def test_pth_is_memory_mapped_and_same_dtype_tensors_are_not_copied():
    path = CKPT / oe.OFFICIAL_T5_FILE  # float32 tensors
    same = oe.load_official_text_encoder(CKPT, torch.float32)
    other = oe.load_official_text_encoder(CKPT, torch.bfloat16)
    ranges = _mapped_ranges(path)
    assert ranges, "the .pth file is not memory-mapped"
    inside = lambda t: any(a <= t.data_ptr() < b for a, b in ranges)  # noqa: E731
    assert all(inside(p) for p in same.parameters())  # used in place: no copy in RAM
    assert not any(inside(p) for p in other.parameters())  # converted: a bfloat16 copy


# ------------------------------------------------------------------------------------ errors
def test_missing_file_is_named(official_folder):
    (official_folder / oe.OFFICIAL_VAE_FILE).unlink()
    with pytest.raises(MissingWeightsError, match="Wan2.1_VAE.pth"):
        oe.load_official_encoders(official_folder)


def test_wrong_file_is_named_with_what_differs(official_folder):
    shutil.copy(official_folder / oe.OFFICIAL_CLIP_FILE, official_folder / oe.OFFICIAL_T5_FILE)
    with pytest.raises(MissingWeightsError, match=r"models_t5_umt5-xxl-enc-bf16\.pth .*(not the expected|no tensor)"):
        oe.load_official_text_encoder(official_folder, torch.float32)


def test_truncated_file_says_download_again(official_folder):
    path = official_folder / oe.OFFICIAL_VAE_FILE
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(MissingWeightsError, match="could not be read.*download the file again"):
        oe.load_official_vae(official_folder)


def test_wrong_shapes_are_listed(official_folder):
    state = {k: v.clone() for k, v in oe.load_state_dict_mmap(official_folder / oe.OFFICIAL_T5_FILE).items()}
    state["blocks.1.attn.o.weight"] = torch.zeros(48, 32)
    del state["blocks.0.norm2.weight"]
    torch.save(state, official_folder / oe.OFFICIAL_T5_FILE)
    with pytest.raises(MissingWeightsError) as error:
        oe.load_official_text_encoder(official_folder, torch.float32)
    assert "blocks.0.norm2.weight" in str(error.value) and "blocks.1.attn.o.weight [48, 32]" in str(error.value)


# ------------------------------------------------------------------------------------ the weights lookup
def test_complete_official_folder_is_its_own_layout(official_folder, no_hub):
    location = resolve_weights(official_folder, offline=True)
    assert location.kind == "official" and location.official_encoders_dir == official_folder
    assert location.transformer_dir == official_folder and location.encoders_dir is None


def test_partial_official_folder_names_the_missing_files(official_folder, no_hub):
    (official_folder / oe.OFFICIAL_CLIP_FILE).unlink()
    shutil.rmtree(official_folder / "google")
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(official_folder, offline=True)
    message = str(error.value)
    assert oe.OFFICIAL_CLIP_FILE in message and "google/umt5-xxl/" in message
    assert f"--include '{oe.OFFICIAL_CLIP_FILE}'" in message and "--include 'google/umt5-xxl/*'" in message


def test_transformer_only_folder_keeps_the_wan_encoders(official_folder, no_hub):
    from tests.tiny_pipeline import shared_tiny_pipeline_path

    for name in (oe.OFFICIAL_T5_FILE, oe.OFFICIAL_CLIP_FILE, oe.OFFICIAL_VAE_FILE):
        (official_folder / name).unlink()
    shutil.rmtree(official_folder / "google")
    location = resolve_weights(official_folder, shared_tiny_pipeline_path(), offline=True)
    assert location.kind == "transformer+encoders" and location.encoders_dir == shared_tiny_pipeline_path()


def test_from_checkpoint_loads_the_folder_with_nothing_downloaded(official_folder, no_hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    pipe = SteadyDancerPipeline.from_checkpoint(official_folder, torch_dtype=torch.float32, offline=False,
                                                clip_heads=TINY_CLIP_HEADS)
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert type(pipe.image_encoder).__name__ == "CLIPVisionModel"
    assert type(pipe.vae).__name__ == "AutoencoderKLWan"
    assert pipe.tokenizer("hello").input_ids[-1] == 1  # </s> appended
    assert pipe.transformer.config.image_dim == 32  # read from the weights (the official code hard-codes 1280)
    assert pipe.vae.dtype == torch.float32 and pipe.image_encoder.dtype == torch.float32
    assert not (tmp_path / "empty-hf-home").exists()


def test_load_pipeline_and_the_cli_model_flag_take_the_folder(official_folder, no_hub, monkeypatch):
    from steadydancer.generation import check_model, load_pipeline

    monkeypatch.setitem(oe.CLIP_HEADS_BY_WIDTH, 32, TINY_CLIP_HEADS)  # the tiny width, as the real 1280 -> 16
    check_model(official_folder, device="cpu", offline=True)
    pipe = load_pipeline(official_folder, preset="quality", device="cpu", offline=True)
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"


def test_hub_snapshot_with_the_official_files_uses_them(tmp_path):
    # The whole official repo already in the Hugging Face cache (e.g. after `hf download MCG-NJU/SteadyDancer-14B`):
    # its own encoders are used, the Wan diffusers encoders are not asked for.
    from tests.test_pipeline_loading import fake_hub_cache
    from steadydancer.weights import DEFAULT_MODEL_ID

    fake_hub_cache(tmp_path, DEFAULT_MODEL_ID, {p.name: p for p in CKPT.iterdir()})
    location = resolve_weights(DEFAULT_MODEL_ID, "no/such-encoders-repo", offline=True, cache_dir=tmp_path)
    assert location.kind == "official"
    assert (location.official_encoders_dir / oe.OFFICIAL_T5_FILE).is_file()
