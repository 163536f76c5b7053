"""Where the weights come from: local diffusers folders, the official SteadyDancer layout + Wan2.1
encoders, the Hugging Face cache in offline mode, and the errors when something is missing. Never
touches the network (offline mode, private cache folders). Also the high-level generation API."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from steadydancer.errors import MissingWeightsError
from steadydancer.generation import check_model, generate_video, load_pipeline
from steadydancer.settings import DEFAULT_NEGATIVE_PROMPT, SamplingSettings
from steadydancer.weights import DEFAULT_ENCODERS_ID, DEFAULT_MODEL_ID, resolve_weights
from steadydancer.models.loading import save_official_checkpoint
from steadydancer.pipeline import SteadyDancerPipeline
from tests.tiny_pipeline import load_tiny_pipeline, shared_tiny_pipeline_path, tiny_inputs

ENCODERS = ("vae", "text_encoder", "tokenizer", "image_encoder", "image_processor")


def run(pipe):
    image, positive, negative = tiny_inputs(5)
    return pipe(image, positive, negative, prompt="a person dancing", num_inference_steps=2, max_area=32 * 32,
                generator=torch.Generator().manual_seed(0)).frames


@pytest.fixture(scope="module")
def reference_frames():
    return run(load_tiny_pipeline())


@pytest.fixture(scope="module")
def official_transformer(tmp_path_factory):
    """The tiny transformer written as the official checkpoint (official config + key names)."""
    folder = tmp_path_factory.mktemp("official") / "SteadyDancer-14B"
    save_official_checkpoint(load_tiny_pipeline().transformer, folder)
    return folder


def fake_hub_cache(cache, repo_id: str, files_from: dict) -> None:
    """A Hugging Face cache entry for ``repo_id`` at a fixed commit, as a download would leave it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, source in files_from.items():
        (shutil.copytree if source.is_dir() else shutil.copy)(source, snapshot / name)


def test_diffusers_folder(reference_frames):
    location = resolve_weights(shared_tiny_pipeline_path(), offline=True)
    assert location.pipeline_dir == shared_tiny_pipeline_path()
    pipe = SteadyDancerPipeline.from_checkpoint(shared_tiny_pipeline_path(), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(pipe), reference_frames, atol=1e-6)


def test_official_transformer_folder_with_wan_encoders_folder(official_transformer, reference_frames):
    assert (official_transformer / "config.json").is_file()
    assert '"dim"' in (official_transformer / "config.json").read_text()  # official config names
    location = resolve_weights(official_transformer, shared_tiny_pipeline_path(), offline=True)
    assert location.pipeline_dir is None
    assert location.transformer_dir == official_transformer
    assert location.encoders_dir == shared_tiny_pipeline_path()
    pipe = SteadyDancerPipeline.from_checkpoint(official_transformer, shared_tiny_pipeline_path(),
                                                torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(pipe), reference_frames, atol=1e-5)


def test_official_folder_holding_diffusers_encoders_needs_nothing_else(tmp_path, official_transformer):
    folder = tmp_path / "all-in-one"
    shutil.copytree(official_transformer, folder)
    for name in ENCODERS:
        shutil.copytree(shared_tiny_pipeline_path() / name, folder / name)
    location = resolve_weights(folder, encoders=None, offline=True)
    assert location.transformer_dir == folder and location.encoders_dir == folder


def test_hub_repos_from_the_cache_in_offline_mode(tmp_path, official_transformer, reference_frames):
    cache = tmp_path / "hub"
    fake_hub_cache(cache, DEFAULT_MODEL_ID, {p.name: p for p in official_transformer.iterdir()})
    fake_hub_cache(cache, DEFAULT_ENCODERS_ID, {name: shared_tiny_pipeline_path() / name for name in ENCODERS})
    location = resolve_weights(DEFAULT_MODEL_ID, DEFAULT_ENCODERS_ID, offline=True, cache_dir=cache)
    assert location.transformer_dir.parent.name == "snapshots"
    assert (location.encoders_dir / "text_encoder").is_dir()
    pipe = SteadyDancerPipeline.from_checkpoint(DEFAULT_MODEL_ID, DEFAULT_ENCODERS_ID, torch_dtype=torch.float32,
                                                offline=True, cache_dir=cache)
    pipe.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(pipe), reference_frames, atol=1e-5)


def test_offline_without_the_weights_says_exactly_what_to_download(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        resolve_weights(DEFAULT_MODEL_ID, DEFAULT_ENCODERS_ID, offline=True, cache_dir=tmp_path)
    message = str(error.value)
    assert "hf download MCG-NJU/SteadyDancer-14B" in message
    assert "hf download Wan-AI/Wan2.1-I2V-14B-720P-Diffusers" in message
    assert "STEADYDANCER_MODEL" in message and "HF_HUB_OFFLINE" in message


def test_offline_with_the_transformer_but_not_the_encoders(tmp_path, official_transformer):
    fake_hub_cache(tmp_path, DEFAULT_MODEL_ID, {p.name: p for p in official_transformer.iterdir()})
    with pytest.raises(MissingWeightsError, match="Wan-AI/Wan2.1-I2V-14B-720P-Diffusers not found"):
        resolve_weights(DEFAULT_MODEL_ID, DEFAULT_ENCODERS_ID, offline=True, cache_dir=tmp_path)


def test_local_folders_that_lack_files(tmp_path, official_transformer):
    with pytest.raises(MissingWeightsError, match="neither model_index.json nor"):
        resolve_weights(tmp_path, offline=True)
    with pytest.raises(MissingWeightsError, match="no folder"):
        resolve_weights(tmp_path / "does-not-exist", offline=True)
    no_weights = tmp_path / "config-only"
    no_weights.mkdir()
    shutil.copy(official_transformer / "config.json", no_weights / "config.json")
    with pytest.raises(MissingWeightsError, match="diffusion_pytorch_model"):
        resolve_weights(no_weights, offline=True)
    with pytest.raises(MissingWeightsError, match="no encoders"):
        resolve_weights(official_transformer, encoders=None, offline=True)
    with pytest.raises(MissingWeightsError, match="lacks vae"):
        resolve_weights(official_transformer, encoders=tmp_path, offline=True)


def test_check_model(tmp_path, monkeypatch):
    check_model(shared_tiny_pipeline_path(), device="cpu")
    with pytest.raises(MissingWeightsError, match="hf download"):
        check_model(str(tmp_path / "nothing-here"), device="cpu", offline=True)
    if not torch.cuda.is_available():
        monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
        with pytest.raises(MissingWeightsError, match="No CUDA GPU"):
            check_model(shared_tiny_pipeline_path(), device="cuda")


# ------------------------------------------------------------------------------------ generation API
@pytest.fixture(scope="module")
def loaded():
    pipe = load_pipeline(shared_tiny_pipeline_path(), preset="quality", device="cpu", offline=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_generate_video_returns_uint8_frames_and_reports_progress(loaded):
    image, positive, negative = tiny_inputs(7)
    reports = []
    frames = generate_video(loaded, image, positive, negative, prompt="a person dancing", num_inference_steps=3, seed=1,
                            max_area=32 * 32, progress=lambda f, m: reports.append((f, m)))
    assert len(frames) == 5  # 7 frames -> 4n + 1
    assert all(f.dtype == np.uint8 and f.shape == (32, 32, 3) for f in frames)
    fractions = [f for f, _ in reports]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert sum("step" in m for _, m in reports) == 3
    again = generate_video(loaded, image, positive, negative, prompt="a person dancing", num_inference_steps=3, seed=1,
                           max_area=32 * 32)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))


def test_generate_video_stops_when_progress_raises(loaded):
    class Cancelled(Exception):
        pass

    def cancel(fraction, message):
        if "step 2" in message:
            raise Cancelled

    calls = []
    handle = loaded.transformer.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(Cancelled):
            generate_video(loaded, *tiny_inputs(5), num_inference_steps=10, max_area=32 * 32, progress=cancel)
    finally:
        handle.remove()
    assert len(calls) == 2


def test_empty_negative_prompt_means_the_official_one(loaded):
    inputs = tiny_inputs(5)
    empty = generate_video(loaded, *inputs, negative_prompt="", num_inference_steps=2, max_area=32 * 32)
    official = generate_video(loaded, *inputs, negative_prompt=DEFAULT_NEGATIVE_PROMPT, num_inference_steps=2, max_area=32 * 32)
    assert all(np.array_equal(a, b) for a, b in zip(empty, official))
    assert DEFAULT_NEGATIVE_PROMPT.startswith("镜头晃动，色调艳丽，过曝")


def test_sampling_settings_resolution():
    official = SamplingSettings.resolve("quality")
    assert (official.num_inference_steps, official.guidance_scale, official.condition_guidance_scale) == (40, 5.0, 1.0)
    assert official.condition_window == (0.1, 0.4) and official.solver == "unipc"
    fast = SamplingSettings.resolve("fast")
    assert (fast.num_inference_steps, fast.guidance_scale, fast.condition_guidance_scale, fast.solver) == (
        4, 1.0, 0.0, "lcm")
    assert SamplingSettings.resolve("fast", num_inference_steps=8).num_inference_steps == 8  # explicit wins
