"""SteadyDancerPipeline end to end on CPU with tiny real components (saved, reloaded with
``from_pretrained``): conditioning layout, frame counts, determinism, guidance passes per step,
diffusers conventions, long videos in windows and their seams."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from steadydancer import SteadyDancerPipeline, SteadyDancerPipelineOutput
from steadydancer.errors import SteadyDancerInputError
from steadydancer.pipeline import match_colors
from steadydancer.settings import DEFAULT_NEGATIVE_PROMPT
from steadydancer.scheduling import crossfade_weights
from tests.tiny_pipeline import load_tiny_pipeline, tiny_inputs

PROMPT = "a person dancing"


@pytest.fixture(scope="module")
def pipe() -> SteadyDancerPipeline:
    return load_tiny_pipeline()


@pytest.fixture(scope="module")
def clip9():
    return tiny_inputs(9)


def run(pipe, image, positive, negative, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("max_area", 32 * 32)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return pipe(image, positive, negative, prompt=kwargs.pop("prompt", PROMPT), generator=generator, **kwargs).frames


class TransformerCalls:
    """Records every transformer call (batch size and inputs) while active."""

    def __init__(self, pipe):
        self.transformer = pipe.transformer
        self.calls: list[dict] = []

    def __enter__(self):
        def hook(module, args, kwargs):
            self.calls.append({k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)})

        self.handle = self.transformer.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    @property
    def batch_sizes(self) -> list[int]:
        return [c["hidden_states"].shape[0] for c in self.calls]


def test_reloaded_components_are_the_real_classes(pipe):
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from transformers import CLIPVisionModel, UMT5EncoderModel

    from steadydancer import SteadyDancerTransformer3DModel

    assert isinstance(pipe.transformer, SteadyDancerTransformer3DModel)
    assert isinstance(pipe.vae, AutoencoderKLWan)
    assert isinstance(pipe.text_encoder, UMT5EncoderModel)
    assert isinstance(pipe.image_encoder, CLIPVisionModel)
    assert isinstance(pipe.scheduler, UniPCMultistepScheduler)
    assert pipe.image_processor is not None


@pytest.mark.parametrize("num_frames", [1, 5, 9])
def test_any_4n_plus_1_frame_count(pipe, clip9, num_frames):
    frames = run(pipe, *clip9, num_frames=num_frames)
    assert frames.shape == (1, num_frames, 32, 32, 3)
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.std() > 0


def test_default_frame_count_is_the_largest_4n_plus_1_the_poses_cover(pipe):
    image, positive, negative = tiny_inputs(8)
    assert run(pipe, image, positive, negative).shape[1] == 5


def test_same_seed_same_video_other_seed_other_video(pipe, clip9):
    first = run(pipe, *clip9, seed=7)
    again = run(pipe, *clip9, seed=7)
    other = run(pipe, *clip9, seed=8)
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_latents_argument_is_the_initial_noise(pipe, clip9):
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor((1, 16, 3, 4, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    assert np.array_equal(run(pipe, *clip9, seed=3), run(pipe, *clip9, seed=None, latents=noise))
    with pytest.raises(ValueError, match="latents"):
        run(pipe, *clip9, latents=torch.zeros(1, 16, 2, 4, 4))


def test_guidance_passes_per_step(pipe, clip9):
    # 10 steps, window (0.1, 0.4): steps 2 and 3 add the condition pass (README item 16).
    with TransformerCalls(pipe) as recorder:
        run(pipe, *clip9, num_inference_steps=10, condition_window=(0.1, 0.4))
    assert recorder.batch_sizes == [2, 2, 3, 3, 2, 2, 2, 2, 2, 2]

    with TransformerCalls(pipe) as recorder:
        run(pipe, *clip9, num_inference_steps=10, condition_window=(0.1, 0.4), batch_guidance_passes=False)
    assert recorder.batch_sizes == [1] * 22

    with TransformerCalls(pipe) as recorder:  # no negative pose video: no condition pass
        run(pipe, clip9[0], clip9[1], None, num_inference_steps=10)
    assert recorder.batch_sizes == [2] * 10

    with TransformerCalls(pipe) as recorder:  # distilled setting: one pass per step
        run(pipe, *clip9, num_inference_steps=4, guidance_scale=1.0, condition_guidance_scale=0.0, solver="lcm")
    assert recorder.batch_sizes == [1] * 4


def test_batched_and_sequential_passes_agree(pipe, clip9):
    batched = run(pipe, *clip9, num_inference_steps=4)
    sequential = run(pipe, *clip9, num_inference_steps=4, batch_guidance_passes=False)
    np.testing.assert_allclose(batched, sequential, atol=1e-5)


def test_conditioning_is_built_as_the_official_pipeline(pipe, clip9):
    """README item 17: y mask and latent, ref_x / ref_c layout, CLIP of both, normalised latents."""
    image, positive, negative = clip9
    with TransformerCalls(pipe) as recorder:
        run(pipe, image, positive, negative, num_inference_steps=4)  # step 1 of 4 has three passes
    inputs = recorder.calls[1]
    assert inputs["hidden_states"].shape == (3, 16, 3, 4, 4)
    y, ref_x, ref_c = inputs["image_condition"], inputs["ref_image_latents"], inputs["ref_pose_latents"]
    assert y.shape == (3, 20, 3, 4, 4) and ref_x.shape == ref_c.shape == (3, 36, 1, 4, 4)
    assert torch.all(y[:, :4, 0] == 1) and torch.all(y[:, :4, 1:] == 0)  # first-frame mask
    assert torch.all(ref_x[:, 16:20] == 1) and torch.equal(ref_x[:, :16], ref_x[:, 20:])
    assert torch.all(ref_c[:, 16:20] == 0) and torch.equal(ref_c[:, :16], ref_c[:, 20:])

    # The VAE is causal: latent frame 0 of [reference, grey, ...] is the reference's own latent, and
    # latent frame 0 of the pose video is the first pose frame's.
    torch.testing.assert_close(y[0, 4:, 0], ref_x[0, :16, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inputs["pose_latents"][0, :, 0], ref_c[0, :16, 0], atol=1e-5, rtol=1e-5)

    # Latents are normalised the Wan way: (z - mean) / std.
    reference = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1
    z = pipe.vae.encode(reference[None, :, None]).latent_dist.mode()
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(ref_x[:1, :16], (z - mean) / std, atol=1e-5, rtol=1e-5)

    # Passes: (text, pose), (negative text, pose), (text, negative pose); all else shared.
    text, pose = inputs["encoder_hidden_states"], inputs["pose_latents"]
    assert torch.equal(text[0], text[2]) and not torch.equal(text[0], text[1])
    assert torch.equal(pose[0], pose[1]) and not torch.equal(pose[0], pose[2])
    clip_x, clip_c = inputs["encoder_hidden_states_image"], inputs["encoder_hidden_states_image_pose"]
    assert clip_x.shape == (3, 17, 1280) and torch.equal(clip_x[0], clip_x[2])
    assert not torch.allclose(clip_x[0], clip_c[0])
    assert inputs["timestep"].dtype == torch.int64 and inputs["timestep"].shape == (3,)


def test_size_follows_the_reference_aspect_and_poses_are_resized(pipe):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)  # portrait 2:3
    poses = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(5)]
    frames = run(pipe, image, poses, poses, max_area=32 * 32)
    assert frames.shape == (1, 5, 32, 16, 3)  # size_for_area(32, 48, 1024) = (16, 32)
    frames = run(pipe, PIL.Image.fromarray(image), poses, None, height=48, width=32)
    assert frames.shape == (1, 5, 48, 32, 3)


def test_prompt_embeddings_can_be_precomputed(pipe, clip9):
    prompt_embeds, negative_embeds = pipe.encode_prompt(PROMPT, None)
    assert prompt_embeds.shape == (1, 16, 16)  # zero-padded to text_len
    direct = run(pipe, *clip9)
    precomputed = run(pipe, *clip9, prompt=None, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds)
    np.testing.assert_allclose(direct, precomputed, atol=1e-6)
    # The default negative prompt is the official one; an explicit different one changes the video.
    _, official = pipe.encode_prompt(PROMPT, DEFAULT_NEGATIVE_PROMPT)
    assert torch.equal(official, negative_embeds)
    assert not np.array_equal(direct, run(pipe, *clip9, negative_prompt="static camera"))


def test_output_types_and_return_dict(pipe, clip9):
    pil = run(pipe, *clip9, num_frames=5, output_type="pil")
    assert len(pil) == 1 and len(pil[0]) == 5 and pil[0][0].size == (32, 32)
    pt = run(pipe, *clip9, num_frames=5, output_type="pt")
    assert pt.shape == (1, 5, 3, 32, 32)
    latent = run(pipe, *clip9, num_frames=5, output_type="latent")
    assert latent.shape == (1, 16, 2, 4, 4)
    output = pipe(*clip9, prompt=PROMPT, num_frames=5, num_inference_steps=1, max_area=1024, return_dict=False)
    assert isinstance(output, tuple) and output[0].shape == (1, 5, 32, 32, 3)
    assert isinstance(pipe(*clip9, prompt=PROMPT, num_frames=5, num_inference_steps=1, max_area=1024),
                      SteadyDancerPipelineOutput)


def test_callback_on_step_end_sees_and_replaces_latents(pipe, clip9):
    seen = []

    def zero_latents(pipeline, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), callback_kwargs["latents"].shape))
        return {"latents": torch.zeros_like(callback_kwargs["latents"])}

    latent = run(pipe, *clip9, num_frames=5, num_inference_steps=3, output_type="latent",
                 callback_on_step_end=zero_latents)
    assert [s for s, _, _ in seen] == [0, 1, 2]
    assert seen[0][1] == 999 and seen[0][2] == (1, 16, 2, 4, 4)
    assert not latent.any()


def test_interrupt_stops_at_the_next_step(pipe, clip9):
    def stop(pipeline, step, timestep, callback_kwargs):
        pipeline._interrupt = True
        return {}

    with TransformerCalls(pipe) as recorder:
        run(pipe, *clip9, num_inference_steps=5, callback_on_step_end=stop)
    assert len(recorder.calls) == 1


def test_user_errors_say_what_to_do(pipe, clip9):
    with pytest.raises(SteadyDancerInputError, match="4n"):
        run(pipe, *clip9, num_frames=6)
    with pytest.raises(SteadyDancerInputError, match="only 9 frames"):
        run(pipe, *clip9, num_frames=13)
    with pytest.raises(SteadyDancerInputError, match="multiples of 16"):
        run(pipe, *clip9, height=40, width=32)
    with pytest.raises(SteadyDancerInputError, match="uint8"):
        run(pipe, clip9[0].astype(np.float32), clip9[1], None)
    with pytest.raises(SteadyDancerInputError, match="latent"):
        run(pipe, *tiny_inputs(13), num_frames=13, window_frames=9, window_overlap=1, output_type="latent")


# ------------------------------------------------------------------------------------ long videos
@pytest.fixture(scope="module")
def long_run(pipe):
    """21 frames in windows of 13 overlapping by 5: windows (0, 13) and (8, 13)."""
    image, positive, negative = tiny_inputs(21, seed=5)
    raw_windows = []
    decode = pipe.decode_latents

    def recording_decode(latents):
        video = decode(latents)
        raw_windows.append(video[0].clone())
        return video

    pipe.decode_latents = recording_decode
    try:
        with TransformerCalls(pipe) as recorder:
            frames = run(pipe, image, positive, negative, num_frames=21, window_frames=13, window_overlap=5)
    finally:
        del pipe.decode_latents
    return {"frames": frames, "raw": raw_windows, "calls": recorder.calls, "positive": positive}


def test_long_video_is_made_of_windows(long_run):
    assert long_run["frames"].shape == (1, 21, 32, 32, 3)
    assert [w.shape[1] for w in long_run["raw"]] == [13, 13]
    assert len(long_run["calls"]) == 2 * 2  # 2 steps per window


def test_next_window_continues_from_the_previous_one_without_repainting_the_reference(pipe, long_run):
    first, second = long_run["calls"][0], long_run["calls"][2]
    # Identity anchors are the same in every window.
    assert torch.equal(first["ref_image_latents"], second["ref_image_latents"])
    assert torch.equal(first["ref_pose_latents"], second["ref_pose_latents"])
    assert torch.equal(first["encoder_hidden_states_image"], second["encoder_hidden_states_image"])
    # The second window's first frame is frame 8 of the first window, not the reference.
    continuation = long_run["raw"][0][:, 8].clamp(-1, 1)
    expected = pipe.encode_video(continuation[None, :, None], torch.device("cpu"))
    torch.testing.assert_close(second["image_condition"][:1, 4:, :1], expected, atol=1e-5, rtol=1e-5)
    assert (second["image_condition"][0, 4:, 0] - first["ref_image_latents"][0, :16, 0]).abs().max() > 1e-2
    # Its pose latents are those of pose frames 8..20.
    poses = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 127.5 - 1 for f in long_run["positive"][8:]], 1)
    torch.testing.assert_close(second["pose_latents"][:1], pipe.encode_video(poses[None], torch.device("cpu")),
                               atol=1e-5, rtol=1e-5)


def test_windows_are_colour_matched_and_crossfaded_at_the_seam(long_run):
    raw0, raw1 = long_run["raw"]
    matched = match_colors(raw1, raw1[:, :5], raw0[:, 8:13])
    weights = crossfade_weights(5).view(1, -1, 1, 1)
    seam = (1 - weights) * raw0[:, 8:13] + weights * matched[:, :5]
    expected = torch.cat([raw0[:, :8], seam, matched[:, 5:]], dim=1)
    expected = (expected.permute(1, 2, 3, 0) / 2 + 0.5).clamp(0, 1).numpy()
    np.testing.assert_allclose(long_run["frames"][0], expected, atol=1e-6)
    # After matching, the overlap frames of both windows share per-channel means.
    torch.testing.assert_close(matched[:, :5].mean((1, 2, 3)), raw0[:, 8:13].mean((1, 2, 3)), atol=1e-5, rtol=0)


def test_colour_matching_can_be_turned_off(pipe):
    image, positive, negative = tiny_inputs(13, seed=2)
    frames = run(pipe, image, positive, negative, num_frames=13, window_frames=9, window_overlap=1,
                 window_color_match=False)
    assert frames.shape == (1, 13, 32, 32, 3)


def test_interrupt_after_a_window_still_returns_its_frames(pipe):
    def stop_after_first_window(pipeline, step, timestep, callback_kwargs):
        if step == 1:
            pipeline._interrupt = True
        return {}

    image, positive, negative = tiny_inputs(21, seed=5)
    with TransformerCalls(pipe) as recorder:
        frames = run(pipe, image, positive, negative, num_frames=21, window_frames=13, window_overlap=5,
                     callback_on_step_end=stop_after_first_window)
    assert len(recorder.calls) == 2  # the first window's two steps
    assert frames.shape == (1, 13, 32, 32, 3)  # the whole first window, overlap frames included
