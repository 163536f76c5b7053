"""SteadyDancerPipeline: a character image + a pose video in, frames out.

A diffusers ``DiffusionPipeline`` around the SteadyDancer transformer with diffusers' / transformers'
own Wan2.1 pieces: ``AutoencoderKLWan``, ``UMT5EncoderModel`` + tokenizer, ``CLIPVisionModel``
(penultimate hidden state) + ``CLIPImageProcessor`` and a flow ``UniPCMultistepScheduler``.

Conditioning is built as the official ``WanI2VDancer.generate`` (fixture README item 17), generalised
from its hard-coded 81 frames to any ``4n + 1``:

* ``y`` = [4 mask channels, 1 on latent frame 0 ; VAE(reference image, then mid-grey frames)];
* ``ref_x`` = [VAE(reference) ; ones(4) ; VAE(reference)], ``ref_c`` = [VAE(first pose frame) ;
  zeros(4) ; VAE(first pose frame)];
* CLIP(reference image at its own size) and CLIP(first pose frame at the reference's size),
  resized straight to the CLIP input size as the official preprocessing does (torch bicubic, whole
  frame, no centre crop);
* the reference and the pose frames resized to the video size with torch bicubic without
  antialiasing, the pose frames after a first PIL resize to the reference's size (official path;
  ``resize_antialias=True`` is the documented alternative); the decoded video clamped to [-1, 1];
* VAE latents of the positive and negative pose videos; every latent normalised the Wan way,
  ``(z - mean) / std`` per channel.

The denoising loop itself lives in :mod:`steadydancer.scheduling` (shared with the reference tests).

**Long videos.** A clip longer than ``window_frames`` is made of consecutive windows. Window ``k + 1``
starts ``window_overlap`` frames before the end of window ``k`` and is conditioned (through ``y``,
the first-frame slot the model was trained with) on the frame of window ``k`` where it starts, so it
*continues* the motion instead of jumping back to the reference. The reference image is never
repainted at a window start; it stays in the identity inputs that do not touch the timeline
(``ref_x`` and the CLIP tokens, plus ``ref_c``/its pose). The overlapping frames are cross-faded, and
each new window's colours are matched to the previous one over the overlap (per-channel mean and
spread): no colour step at the seams, and the tint a decode -> encode round trip of the
continuation frame can introduce is pulled back to the previous window's instead of accumulating
unchecked. (Not verified on the real model here: no GPU, random tiny weights.)
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor
from transformers import CLIPVisionModel, PreTrainedTokenizerBase, UMT5EncoderModel
from transformers.image_processing_utils import BaseImageProcessor

from .constants import DEFAULT_MAX_AREA, VAE_TEMPORAL_STRIDE, is_valid_frame_count, latent_frame_count, size_for_area
from .errors import SteadyDancerInputError
from .settings import (
    CONDITION_GUIDANCE_SCALE,
    CONDITION_WINDOW_END,
    CONDITION_WINDOW_START,
    DEFAULT_NEGATIVE_PROMPT,
    GUIDANCE_SCALE,
    NUM_INFERENCE_STEPS,
    RESIZE_ANTIALIAS_DEFAULT,
    SHIFT_DEFAULT,
    SOLVER,
    WINDOW_FRAMES,
    WINDOW_OVERLAP,
    recommended_shift,
)
from .models.transformer_steadydancer import SteadyDancerTransformer3DModel
from .scheduling import (  # noqa: F401  (plan_windows, crossfade_weights re-exported)
    SOLVERS,
    DenoisingInputs,
    build_scheduler,
    crossfade_weights,
    denoise,
    passes_for_step,
    plan_windows,
    set_schedule,
)
from .weights import DEFAULT_ENCODERS_ID, DEFAULT_MODEL_ID

logger = logging.get_logger(__name__)

# =============================================================================================
# Frames in and out
# =============================================================================================


def _image_to_tensor(image) -> torch.Tensor:
    """PIL image / uint8 ``H x W x 3`` array / ``[3, H, W]`` tensor in [-1, 1] -> float32 ``[3, H, W]`` in [-1, 1]
    (uint8 as the official code: ``x / 255``, then ``(x - 0.5) / 0.5``)."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise SteadyDancerInputError(f"An image tensor must be [3, H, W] in [-1, 1], got {tuple(image.shape)}.")
        return image.float()
    if isinstance(image, PIL.Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise SteadyDancerInputError(
            f"Images must be RGB uint8 arrays of shape H x W x 3 (or PIL images); got {array.dtype} {array.shape}."
        )
    if not array.flags.writeable:  # e.g. np.asarray(PIL image): torch wants writable memory
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)


class _Frames:
    """A video kept as it came (uint8 frames, or a float tensor), converted to float and resized
    one window at a time (frame by frame), so a long clip never sits in memory as float32 at full size.

    ``via_size`` (H, W): the official path first resizes every pose frame to the reference image's
    size -- with PIL's bicubic (antialiased when shrinking) for uint8 frames, torch's antialiased
    bicubic for float tensors -- and only then to the generation size (:func:`_resize`)."""

    def __init__(self, frames, name: str):
        if isinstance(frames, torch.Tensor):
            if frames.ndim != 4 or frames.shape[0] != 3:
                raise SteadyDancerInputError(f"`{name}` as a tensor must be [3, F, H, W] in [-1, 1].")
            self._tensor, self._frames = frames, None
            self.size = tuple(frames.shape[2:])
            self.count = frames.shape[1]
            return
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        if not isinstance(frames, (list, tuple)) or len(frames) == 0:
            raise SteadyDancerInputError(f"`{name}` must be a non-empty list of frames.")
        arrays = [np.asarray(f.convert("RGB")) if isinstance(f, PIL.Image.Image) else np.asarray(f) for f in frames]
        first = arrays[0]
        for array in arrays:
            if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
                raise SteadyDancerInputError(
                    f"Frames of `{name}` must be RGB uint8 arrays H x W x 3 (or PIL images); got {array.dtype} "
                    f"{array.shape}."
                )
            if array.shape != first.shape:
                raise SteadyDancerInputError(f"All frames of `{name}` must have the same size.")
        self._tensor, self._frames = None, arrays
        self.size = first.shape[:2]
        self.count = len(arrays)

    def frame(self, index: int, via_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Frame ``index`` as float32 ``[3, H, W]`` in [-1, 1], at ``via_size`` (H, W) when given."""
        if via_size is not None:
            via_size = tuple(via_size)
        if self._tensor is not None:
            frame = self._tensor[:, index].float()
            if via_size is not None and tuple(frame.shape[1:]) != via_size:
                frame = F.interpolate(frame[None], size=via_size, mode="bicubic", align_corners=False,
                                      antialias=True)[0]
            return frame
        array = self._frames[index]
        if via_size is not None and tuple(array.shape[:2]) != via_size:
            resized = PIL.Image.fromarray(array).resize((via_size[1], via_size[0]), PIL.Image.Resampling.BICUBIC)
            array = np.asarray(resized)
        return _image_to_tensor(array)

    def window(self, start: int, length: int, height: int, width: int, via_size: tuple[int, int] | None = None,
               antialias: bool = False) -> torch.Tensor:
        """Frames ``start .. start + length - 1`` as float32 ``[3, length, height, width]`` in [-1, 1]."""
        return torch.stack(
            [_resize(self.frame(i, via_size), height, width, antialias) for i in range(start, start + length)], dim=1
        )


def _resize(frames: torch.Tensor, height: int, width: int, antialias: bool = False) -> torch.Tensor:
    """Bicubic resize (torch, ``align_corners=False``) of ``[C, F, H, W]`` (or ``[C, H, W]``) to (height, width).

    The official path resizes without antialiasing (values may overshoot [-1, 1]; nothing clamps
    them). ``antialias=True`` antialiases when shrinking (a large photo resized without it aliases,
    and the first frame carries that through the video) -- an option, not the official behaviour.
    """
    single = frames.ndim == 3
    video = frames.unsqueeze(1) if single else frames
    if video.shape[-2:] != (height, width):
        shrinking = video.shape[-2] > height or video.shape[-1] > width
        video = F.interpolate(
            video.transpose(0, 1), size=(height, width), mode="bicubic", align_corners=False,
            antialias=antialias and shrinking,
        ).transpose(0, 1)
    return video[:, 0] if single else video


def _postprocess(video: torch.Tensor, output_type: str):
    """``[3, F, H, W]`` in [-1, 1] -> frames of ``output_type`` (``np``: float ``[F, H, W, 3]`` in
    [0, 1]; ``pt``: ``[F, 3, H, W]`` in [0, 1]; ``pil``: list of images)."""
    frames = (video.float().transpose(0, 1) / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return frames
    array = frames.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return array
    return [PIL.Image.fromarray((f * 255).round().astype(np.uint8)) for f in array]


# =============================================================================================
# Long videos: colour matching (windows are planned in steadydancer.scheduling)
# =============================================================================================


def match_colors(video: torch.Tensor, new_overlap: torch.Tensor, old_overlap: torch.Tensor) -> torch.Tensor:
    """Shift/scale each channel of ``video`` ``[3, F, H, W]`` so that its overlap frames get the
    previous window's per-channel mean and spread (ratio clamped to [0.8, 1.25])."""
    dims = (1, 2, 3)
    mean_new, mean_old = new_overlap.mean(dims, keepdim=True), old_overlap.mean(dims, keepdim=True)
    std_new, std_old = new_overlap.std(dims, keepdim=True), old_overlap.std(dims, keepdim=True)
    ratio = (std_old / std_new.clamp_min(1e-6)).clamp(0.8, 1.25)
    return (video - mean_new) * ratio + mean_old


# =============================================================================================
# Output
# =============================================================================================


@dataclass
class SteadyDancerPipelineOutput(BaseOutput):
    r"""
    Output of [`SteadyDancerPipeline`].

    Args:
        frames (`np.ndarray`, `torch.Tensor` or `list[list[PIL.Image.Image]]`):
            Batch of one video: ``np`` float ``[1, F, H, W, 3]`` in [0, 1]; ``pt`` ``[1, F, 3, H, W]`` in
            [0, 1]; ``pil`` ``[[image, ...]]``; ``latent`` the final latent ``[1, 16, f, h, w]`` (one
            window only).
    """

    frames: Any


# =============================================================================================
# The pipeline
# =============================================================================================


def _clean_prompt(text: str) -> str:
    """The official text cleaning: ``ftfy.fix_text`` (also straightens curly quotes, which the UMT5
    vocabulary would otherwise map differently), HTML unescape twice, whitespace runs -> one space."""
    import ftfy  # a hard requirement: without it the tokens differ from the official ones

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class SteadyDancerPipeline(DiffusionPipeline, WanLoraLoaderMixin):
    r"""
    SteadyDancer human image animation: animate the person of ``image`` with the motion of a pose
    video, keeping the image as the first frame (image-to-video paradigm).

    Args:
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]): UMT5 tokenizer (google/umt5-xxl).
        text_encoder ([`~transformers.UMT5EncoderModel`]): UMT5-XXL encoder.
        vae ([`AutoencoderKLWan`]): Wan2.1 VAE (stride 4 x 8 x 8, 16 latent channels).
        scheduler ([`~diffusers.UniPCMultistepScheduler`]): flow-prediction UniPC; its config is the
            template for the per-call scheduler (the flow shift is set per call).
        image_encoder ([`~transformers.CLIPVisionModel`]): open-clip ViT-H/14 vision tower; its
            penultimate hidden state (257 tokens) is used.
        transformer ([`SteadyDancerTransformer3DModel`]): the denoiser.
        image_processor ([`~transformers.CLIPImageProcessor`], *optional*): only its normalisation
            mean/std are used (the resize follows the official preprocessing).
        preset (`str`, *optional*): the memory / speed preset the weights were laid out with
            (:func:`steadydancer.presets.apply_preset` records it here, in the pipeline's config, and the
            generation entry points read its sampling overrides from ``pipe.config.preset``).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->transformer->vae"
    _optional_components = ["image_processor"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        text_encoder: UMT5EncoderModel,
        vae: AutoencoderKLWan,
        scheduler: SchedulerMixin,
        image_encoder: CLIPVisionModel,
        transformer: SteadyDancerTransformer3DModel,
        image_processor: BaseImageProcessor | None = None,
        preset: str | None = None,
    ):
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=vae,
            scheduler=scheduler,
            image_encoder=image_encoder,
            transformer=transformer,
            image_processor=image_processor,
        )
        self.register_to_config(preset=preset)
        self.vae_scale_factor_temporal = self.vae.config.scale_factor_temporal if getattr(self, "vae", None) else 4
        self.vae_scale_factor_spatial = self.vae.config.scale_factor_spatial if getattr(self, "vae", None) else 8
        #: Run the guidance passes of a step as one batch (set False by the low-VRAM preset).
        self.batch_guidance_passes = True
        self._guidance_scale = GUIDANCE_SCALE.default
        self._num_timesteps = 0
        self._current_timestep = None
        self._current_window = 0
        self._num_windows = 1
        self._interrupt = False
        self._attention_kwargs = None
        self._call_cache: dict[str, Any] | None = None

    def _device_of(self, component: str) -> torch.device:
        """Where ``component``'s inputs must go (offloading-aware). Finding it walks every submodule,
        so ``__call__`` caches it for the duration of a call (placement does not change mid-call)."""
        if self._call_cache is None:
            return get_module_execution_device(getattr(self, component))
        if component not in self._call_cache:
            self._call_cache[component] = get_module_execution_device(getattr(self, component))
        return self._call_cache[component]

    def _dtype_of(self, component: str) -> torch.dtype:
        """``component.dtype`` (the compute dtype under layerwise casting), cached like :meth:`_device_of`."""
        if self._call_cache is None:
            return getattr(self, component).dtype
        key = f"{component}.dtype"
        if key not in self._call_cache:
            self._call_cache[key] = getattr(self, component).dtype
        return self._call_cache[key]

    # ----------------------------------------------------------------------------- properties
    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def num_timesteps(self):
        return self._num_timesteps

    @property
    def current_timestep(self):
        return self._current_timestep

    @property
    def current_window(self) -> int:
        """0-based index of the window being generated (long videos)."""
        return self._current_window

    @property
    def num_windows(self) -> int:
        return self._num_windows

    @property
    def interrupt(self):
        return self._interrupt

    @property
    def attention_kwargs(self):
        return self._attention_kwargs

    @property
    def spatial_multiple(self) -> int:
        """Pixel sides must be multiples of this (VAE stride x patch size, 16)."""
        return self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]

    # ----------------------------------------------------------------------------- encoders
    def _get_t5_prompt_embeds(self, prompt: list[str], max_sequence_length: int, device, dtype) -> torch.Tensor:
        prompt = [_clean_prompt(p) for p in prompt]
        text_inputs = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = text_inputs.input_ids, text_inputs.attention_mask
        seq_lens = mask.gt(0).sum(dim=1).long()
        encoder_device = self._device_of("text_encoder")
        hidden = self.text_encoder(ids.to(encoder_device), mask.to(encoder_device)).last_hidden_state
        hidden = hidden.to(device=device, dtype=dtype)
        # Keep the real tokens, zero the padding (official: trim, the model zero-pads to text_len).
        keep = (torch.arange(hidden.shape[1], device=device)[None, :] < seq_lens.to(device)[:, None]).to(dtype)
        return hidden * keep[..., None]

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""UMT5 embeddings ``[B, max_sequence_length, text_dim]`` of the prompt and (when guidance
        needs it) the negative prompt, zero beyond each prompt's tokens. ``max_sequence_length``
        defaults to the transformer's ``text_len`` (512)."""
        device = device or self._execution_device
        dtype = dtype or self.text_encoder.dtype
        max_sequence_length = max_sequence_length or self.transformer.config.text_len
        if prompt_embeds is None:
            prompt = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = self._get_t5_prompt_embeds(prompt, max_sequence_length, device, dtype)
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negative_prompt = DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
            negative = [negative_prompt] * prompt_embeds.shape[0] if isinstance(negative_prompt, str) else negative_prompt
            negative_prompt_embeds = self._get_t5_prompt_embeds(list(negative), max_sequence_length, device, dtype)
        return prompt_embeds, negative_prompt_embeds

    def encode_image(self, images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        r"""CLIP penultimate hidden states ``[N, tokens, image_dim]`` of ``images`` ``[N, 3, H, W]`` in
        [-1, 1]. As the official preprocessing: the whole frame is resized (bicubic, no crop, no
        antialiasing) to the encoder's input size, then normalised with the CLIP mean/std."""
        device = device or self._execution_device
        size = self.image_encoder.config.image_size
        processor = self.image_processor
        mean = getattr(processor, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073]
        std = getattr(processor, "image_std", None) or [0.26862954, 0.26130258, 0.27577711]
        pixels = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False)
        pixels = pixels * 0.5 + 0.5
        # Every tensor made here names its dtype: loading a pipeline (diffusers / transformers) sets
        # torch's process-wide default dtype for a moment, which another slot's generation would see.
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (mean, std))
        pixels = (pixels - mean) / std
        encoder_device = self._device_of("image_encoder")
        pixels = pixels.to(device=encoder_device, dtype=self.image_encoder.dtype)
        hidden_states = self.image_encoder(pixel_values=pixels, output_hidden_states=True).hidden_states
        return hidden_states[-2].to(device)

    def _latents_mean_std(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32).view(1, z, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32).view(1, z, 1, 1, 1)
        return mean.to(device), std.to(device)

    def encode_video(self, video: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        r"""Normalised VAE latents (float32 ``[B, 16, f, h, w]``) of ``video`` ``[B, 3, F, H, W]`` in
        [-1, 1]: the posterior mean, ``(z - mean) / std`` per channel (the Wan way)."""
        device = device or self._execution_device
        vae_device = self._device_of("vae")
        posterior = self.vae.encode(video.to(device=vae_device, dtype=self._dtype_of("vae"))).latent_dist
        latents = posterior.mode().float().to(device)
        mean, std = self._latents_mean_std(device)
        return (latents - mean) * (1.0 / std)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        r"""Pixels ``[B, 3, F, H, W]`` clamped to [-1, 1] (float32, on the CPU) of normalised latents."""
        vae_device = self._device_of("vae")
        mean, std = self._latents_mean_std(vae_device)
        latents = latents.to(device=vae_device, dtype=torch.float32) / (1.0 / std) + mean
        video = self.vae.decode(latents.to(self._dtype_of("vae")), return_dict=False)[0]
        return video.float().clamp(-1.0, 1.0).cpu()  # the official decode clamps to [-1, 1]

    # ----------------------------------------------------------------------------- conditioning
    def _first_frame_mask(self, num_latent_frames: int, height: int, width: int, device) -> torch.Tensor:
        """``[1, 4, f, h, w]``: the I2V mask, 1 on the 4 sub-frames of latent frame 0 (the one pixel
        frame it holds, repeated 4 times as in Wan), 0 elsewhere."""
        mask = torch.zeros(1, self.vae_scale_factor_temporal, num_latent_frames, height, width, device=device,
                           dtype=torch.float32)
        mask[:, :, 0] = 1.0
        return mask

    def prepare_image_condition(self, first_frame: torch.Tensor, num_frames: int, device) -> torch.Tensor:
        r"""``y`` ``[1, 20, f, h, w]``: first-frame mask + VAE latent of [``first_frame``, then
        ``num_frames - 1`` zero (mid-grey) frames]. ``first_frame`` ``[3, H, W]`` in [-1, 1]."""
        _, height, width = first_frame.shape
        video = torch.zeros(1, 3, num_frames, height, width, dtype=torch.float32)  # not the default dtype: see encode_image
        video[0, :, 0] = first_frame
        latents = self.encode_video(video, device)
        mask = self._first_frame_mask(latents.shape[2], latents.shape[3], latents.shape[4], device)
        return torch.cat([mask, latents], dim=1)

    def prepare_reference_latents(self, reference: torch.Tensor, first_pose: torch.Tensor, device):
        r"""``ref_x``, ``ref_c`` ``[1, 36, 1, h, w]`` from the reference image and the first pose frame
        (both ``[3, H, W]`` in [-1, 1]), encoded together as two one-frame videos."""
        latents = self.encode_video(torch.stack([reference, first_pose]).unsqueeze(2), device)
        ref_image, ref_pose = latents[0:1], latents[1:2]
        ones = torch.ones_like(ref_image[:, :4])
        ref_x = torch.cat([ref_image, ones, ref_image], dim=1)
        ref_c = torch.cat([ref_pose, torch.zeros_like(ones), ref_pose], dim=1)
        return ref_x, ref_c

    # ----------------------------------------------------------------------------- checks
    def check_inputs(
        self,
        prompt,
        prompt_embeds,
        negative_prompt,
        negative_prompt_embeds,
        height,
        width,
        solver,
        condition_window,
        callback_on_step_end_tensor_inputs,
        output_type,
    ):
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Pass either `prompt` or `prompt_embeds`, not both.")
        if prompt is None and prompt_embeds is None:
            raise ValueError("Pass `prompt` (it may be an empty string) or `prompt_embeds`.")
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError("`prompt` must be one string (the pipeline makes one video per call).")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass either `negative_prompt` or `negative_prompt_embeds`, not both.")
        if prompt_embeds is not None and prompt_embeds.shape[0] != 1:
            raise ValueError("`prompt_embeds` must have batch size 1 (one video per call).")
        multiple = self.spatial_multiple
        if height % multiple or width % multiple:
            raise SteadyDancerInputError(f"height and width must be multiples of {multiple}; got {height}x{width}.")
        if solver not in SOLVERS:
            raise ValueError(f"`solver` must be one of {SOLVERS}, got {solver!r}.")
        start, end = condition_window
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"`condition_window` must be (start, end) with 0 <= start <= end <= 1.")
        if callback_on_step_end_tensor_inputs is not None and not all(
            k in self._callback_tensor_inputs for k in callback_on_step_end_tensor_inputs
        ):
            raise ValueError(f"`callback_on_step_end_tensor_inputs` must be in {self._callback_tensor_inputs}.")
        if output_type not in ("np", "pt", "pil", "latent"):
            raise ValueError(f"`output_type` must be 'np', 'pt', 'pil' or 'latent', got {output_type!r}.")

    # ----------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        image,
        pose_video,
        negative_pose_video=None,
        prompt: str | None = "",
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        max_area: int = DEFAULT_MAX_AREA,
        num_frames: int | None = None,
        num_inference_steps: int = NUM_INFERENCE_STEPS.default,
        guidance_scale: float = GUIDANCE_SCALE.default,
        condition_guidance_scale: float = CONDITION_GUIDANCE_SCALE.default,
        condition_window: tuple[float, float] = (CONDITION_WINDOW_START.default, CONDITION_WINDOW_END.default),
        shift: float | None = None,
        solver: str = SOLVER.default,
        window_frames: int = WINDOW_FRAMES.default,
        window_overlap: int = WINDOW_OVERLAP.default,
        window_color_match: bool = True,
        resize_antialias: bool = RESIZE_ANTIALIAS_DEFAULT,
        batch_guidance_passes: bool | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        max_sequence_length: int | None = None,
    ) -> SteadyDancerPipelineOutput | tuple:
        r"""
        Animate ``image`` with the poses of ``pose_video``.

        Args:
            image (`PIL.Image.Image`, uint8 `np.ndarray` H x W x 3, or `torch.Tensor` [3, H, W] in [-1, 1]):
                The character. It becomes the first frame; its aspect ratio sets the video's.
            pose_video (list of frames, uint8 `np.ndarray` [F, H, W, 3] or `torch.Tensor` [3, F, H, W]):
                The positive pose condition, aligned to the character (its first frame is the
                character's pose). Frames are resized to the reference image's size, then to the
                video size, as the official path (see ``resize_antialias``); rendering them at the
                reference image's size makes the first resize a no-op.
            negative_pose_video (same types, *optional*):
                The negative pose condition for condition guidance. Without it there is no condition
                pass (as ``condition_guidance_scale=0``).
            prompt (`str`, defaults to `""`): what the video shows. Exclusive with ``prompt_embeds``.
            negative_prompt (`str`, *optional*): defaults to the official (Chinese) Wan negative prompt.
            height, width (`int`, *optional*): video size, multiples of 16. Default: the reference
                aspect ratio within ``max_area`` (:func:`steadydancer.constants.size_for_area`).
            max_area (`int`, defaults to 1024*576): pixel budget when height/width are not given.
            num_frames (`int`, *optional*): ``4n + 1`` frames to generate; default the largest
                ``4n + 1`` the pose video covers. Longer than ``window_frames`` -> several windows.
            num_inference_steps (`int`, defaults to 40): denoising steps per window.
            guidance_scale (`float`, defaults to 5.0): text CFG scale (1.0: no text-unconditional pass).
            condition_guidance_scale (`float`, defaults to 1.0): pose-condition guidance scale.
            condition_window (`(float, float)`, defaults to (0.1, 0.4)): the condition pass
                runs at step ``i`` of ``N`` iff ``start < i / N < end`` (strict, as the official code).
            shift (`float`, *optional*): flow shift; default 5.0, or 3.0 at 480p area and below.
            solver (`str`, defaults to ``"unipc"``): ``unipc`` (official), ``euler`` or ``lcm``
                (stochastic Euler, for step-distilled LoRAs).
            window_frames (`int`, defaults to 81), window_overlap (`int`, defaults to 5): long-video
                windows (both ``4n + 1``); see the module docstring.
            window_color_match (`bool`, defaults to `True`): match each window's colours to the
                previous one over the overlap.
            resize_antialias (`bool`, defaults to `False`): the official path (default) resizes the
                reference image and every pose frame to the video size with torch bicubic *without*
                antialiasing, the pose frames after a first resize to the reference image's size
                (PIL bicubic, antialiased). True resizes both straight to the video size with
                antialiasing when shrinking (less aliasing from large inputs; not what the model was
                validated with). The CLIP inputs are the official ones either way: the reference at
                its own size and the first pose frame at the reference's size, resized straight to
                224 x 224 (torch bicubic, no antialiasing, no crop).
            batch_guidance_passes (`bool`, *optional*): run a step's guidance passes as one batch
                (default: ``self.batch_guidance_passes``); False runs them one by one (less memory).
            generator (`torch.Generator`, *optional*): drives the initial noise of every window (and
                the ``lcm`` re-noising); the same generator goes to every scheduler step.
            latents (`torch.Tensor`, *optional*): initial noise ``[1, 16, f, h, w]`` of the first window.
            prompt_embeds, negative_prompt_embeds (`torch.Tensor`, *optional*): precomputed UMT5
                embeddings ``[1, L, text_dim]`` (zero beyond the tokens).
            output_type (`str`, defaults to ``"np"``): ``np``, ``pt``, ``pil`` or ``latent`` (one window).
            return_dict (`bool`, defaults to `True`): return a [`SteadyDancerPipelineOutput`].
            attention_kwargs (`dict`, *optional*): passed to the transformer (``scale``: LoRA scale).
            callback_on_step_end (`Callable`, *optional*): ``callback(pipe, step, timestep, kwargs)``
                at the end of each step (``step`` counts within the window; see ``current_window``).
            callback_on_step_end_tensor_inputs (`list[str]`): tensors given to the callback.
            max_sequence_length (`int`, *optional*): text tokens, default the transformer's ``text_len``.

        Returns:
            [`SteadyDancerPipelineOutput`] or a tuple ``(frames,)``.
        """
        arguments = dict(locals())
        del arguments["self"]
        self._call_cache = {}  # execution devices and dtypes, looked up once per call
        try:
            return self._generate(**arguments)
        finally:
            self._call_cache = None

    def _generate(
        self, *, image, pose_video, negative_pose_video, prompt, negative_prompt, height, width, max_area, num_frames,
        num_inference_steps, guidance_scale, condition_guidance_scale, condition_window, shift, solver,
        window_frames, window_overlap, window_color_match, resize_antialias, batch_guidance_passes, generator, latents,
        prompt_embeds,
        negative_prompt_embeds, output_type, return_dict, attention_kwargs, callback_on_step_end,
        callback_on_step_end_tensor_inputs, max_sequence_length,
    ):
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if isinstance(generator, list):
            if len(generator) != 1:
                raise ValueError("One video per call: pass one generator.")
            generator = generator[0]

        # 1. Frames, size and frame count (the reference's own size sets the aspect ratio).
        reference = _image_to_tensor(image)
        reference_size = tuple(reference.shape[1:])
        positive = _Frames(pose_video, "pose_video")
        negative = _Frames(negative_pose_video, "negative_pose_video") if negative_pose_video is not None else None
        if height is None or width is None:
            width, height = size_for_area(reference.shape[2], reference.shape[1], max_area, self.spatial_multiple)
        if shift is None:
            shift = recommended_shift(height, width)
        self.check_inputs(
            prompt, prompt_embeds, negative_prompt, negative_prompt_embeds, height, width, solver,
            condition_window, callback_on_step_end_tensor_inputs, output_type,
        )
        available = positive.count if negative is None else min(positive.count, negative.count)
        if num_frames is None:
            num_frames = (available - 1) // VAE_TEMPORAL_STRIDE * VAE_TEMPORAL_STRIDE + 1
        if not is_valid_frame_count(num_frames):
            raise SteadyDancerInputError(f"num_frames must be 4n + 1 (1, 5, 9, ..., 81, ...), got {num_frames}.")
        if num_frames > available:
            raise SteadyDancerInputError(
                f"num_frames={num_frames} but the pose video{'s have' if negative is not None else ' has'} only "
                f"{available} frames: ask for fewer frames or give a longer driving video."
            )
        windows = plan_windows(num_frames, window_frames, window_overlap)
        if output_type == "latent" and len(windows) > 1:
            raise SteadyDancerInputError(
                "output_type='latent' returns one window's latent; ask for at most window_frames frames."
            )
        # Official path: pose frames go through the reference's size, then everything to (height, width)
        # with torch bicubic, no antialiasing; the CLIP inputs are the reference-size images.
        via_size = None if resize_antialias else reference_size
        clip_images = torch.stack([reference, positive.frame(0, reference_size)])
        reference = _resize(reference, height, width, resize_antialias)
        first_pose = positive.window(0, 1, height, width, via_size, resize_antialias)[:, 0]

        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._interrupt = False
        self._num_windows = len(windows)
        batch_passes = self.batch_guidance_passes if batch_guidance_passes is None else batch_guidance_passes
        device = self._execution_device
        transformer_dtype = self._dtype_of("transformer")
        do_text_guidance = guidance_scale != 1.0
        use_condition_guidance = negative is not None and condition_guidance_scale != 0.0
        if negative is None and condition_guidance_scale != 0.0:
            logger.info("No negative pose video: condition guidance is off.")

        # 2. Text and CLIP embeddings (shared by every window).
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            negative_prompt,
            do_classifier_free_guidance=do_text_guidance,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_sequence_length,
            device=device,
        )
        clip_tokens = self.encode_image(clip_images, device)
        image_embeds, pose_image_embeds = clip_tokens[0:1], clip_tokens[1:2]
        del clip_images

        # 3. Reference blocks (identity anchors, never re-encoded per window).
        ref_x, ref_c = self.prepare_reference_latents(reference, first_pose, device)

        # 4. Windows: condition, denoise, decode, stitch.
        latent_h, latent_w = height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial
        steps_total = num_inference_steps * len(windows)
        emitted: list = []
        tail = None  # last `window_overlap` decoded frames of the previous window, not yet emitted
        final_latents = None
        with self.progress_bar(total=steps_total) as progress_bar:
            for window_index, (start, length) in enumerate(windows):
                if self.interrupt:
                    break
                self._current_window = window_index
                if hasattr(self.transformer, "_reset_stateful_cache"):
                    self.transformer._reset_stateful_cache()  # cache hooks: a new window is a new trajectory
                first_frame = reference if window_index == 0 else tail[:, 0].clamp(-1.0, 1.0)
                image_condition = self.prepare_image_condition(first_frame, length, device)
                pose_latents = self.encode_video(
                    positive.window(start, length, height, width, via_size, resize_antialias)[None], device)
                negative_pose_latents = None
                if use_condition_guidance and any(
                    "uncond_condition" in passes_for_step(i, num_inference_steps, guidance_scale,
                                                          condition_guidance_scale, condition_window)
                    for i in range(num_inference_steps)
                ):
                    negative_pose_latents = self.encode_video(
                        negative.window(start, length, height, width, via_size, resize_antialias)[None], device)
                inputs = DenoisingInputs(
                    prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative_prompt_embeds,
                    image_embeds=image_embeds,
                    pose_image_embeds=pose_image_embeds,
                    image_condition=image_condition,
                    pose_latents=pose_latents,
                    negative_pose_latents=negative_pose_latents,
                    ref_image_latents=ref_x,
                    ref_pose_latents=ref_c,
                ).to(device=device, dtype=transformer_dtype)

                shape = (1, self.vae.config.z_dim, latent_frame_count(length), latent_h, latent_w)
                if window_index == 0 and latents is not None:
                    if tuple(latents.shape) != shape:
                        raise ValueError(f"`latents` must have shape {shape}, got {tuple(latents.shape)}.")
                    window_latents = latents.to(device=device, dtype=torch.float32)
                else:
                    window_latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)

                scheduler = build_scheduler(solver, shift, template=self.scheduler)
                set_schedule(scheduler, num_inference_steps, solver, device)
                self._num_timesteps = len(scheduler.timesteps)

                def on_step_end(i, t, step_latents, _inputs=inputs):
                    nonlocal prompt_embeds, negative_prompt_embeds
                    self._current_timestep = t
                    replacement = None
                    if callback_on_step_end is not None:
                        callback_kwargs = {"latents": step_latents, "prompt_embeds": prompt_embeds,
                                           "negative_prompt_embeds": negative_prompt_embeds}
                        callback_kwargs = {k: callback_kwargs[k] for k in callback_on_step_end_tensor_inputs}
                        outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                        replacement = outputs.pop("latents", None)
                        new_pos = outputs.pop("prompt_embeds", None)
                        new_neg = outputs.pop("negative_prompt_embeds", None)
                        if new_pos is not None or new_neg is not None:
                            prompt_embeds = new_pos if new_pos is not None else prompt_embeds
                            negative_prompt_embeds = new_neg if new_neg is not None else negative_prompt_embeds
                            _inputs.prompt_embeds = prompt_embeds.to(device=device, dtype=transformer_dtype)
                            if negative_prompt_embeds is not None:
                                _inputs.negative_prompt_embeds = negative_prompt_embeds.to(device, transformer_dtype)
                            _inputs._batched.clear()
                    progress_bar.update()
                    return replacement

                window_latents = denoise(
                    self.transformer,
                    scheduler,
                    window_latents,
                    inputs,
                    guidance_scale=guidance_scale,
                    condition_guidance_scale=condition_guidance_scale,
                    condition_window=condition_window,
                    generator=generator,
                    batch_passes=batch_passes,
                    attention_kwargs=attention_kwargs,
                    on_step_end=on_step_end,
                    should_stop=lambda: self.interrupt,
                    dtype=transformer_dtype,
                )
                self._current_timestep = None
                del inputs
                if output_type == "latent":
                    final_latents = window_latents
                    break

                video = self.decode_latents(window_latents)[0]  # [3, length, H, W], CPU float32
                if tail is not None:
                    overlap = tail.shape[1]
                    if window_color_match:
                        video = match_colors(video, video[:, :overlap], tail)
                    weights = crossfade_weights(overlap).view(1, -1, 1, 1)
                    video[:, :overlap] = (1 - weights) * tail + weights * video[:, :overlap]
                is_last = window_index == len(windows) - 1
                keep = 0 if is_last else window_overlap
                if length - keep > 0:
                    emitted.append(_postprocess(video[:, : length - keep], output_type))
                tail = None if is_last else video[:, length - keep :].clone()

        if tail is not None:  # interrupted between windows: the held-back overlap frames are still output
            emitted.append(_postprocess(tail, output_type))
        self._current_timestep = None
        self.maybe_free_model_hooks()

        if output_type == "latent":
            frames = final_latents
        elif output_type == "np":
            frames = np.concatenate(emitted)[None] if emitted else np.zeros((1, 0, height, width, 3), np.float32)
        elif output_type == "pt":
            frames = torch.cat(emitted)[None] if emitted else torch.zeros(1, 0, 3, height, width, dtype=torch.float32)
        else:
            frames = [[image for chunk in emitted for image in chunk]]
        if not return_dict:
            return (frames,)
        return SteadyDancerPipelineOutput(frames=frames)

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_checkpoint(
        cls,
        model: str | os.PathLike = DEFAULT_MODEL_ID,
        encoders: str | os.PathLike | None = DEFAULT_ENCODERS_ID,
        torch_dtype: torch.dtype = torch.bfloat16,
        *,
        offline: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        clip_heads: int | None = None,
    ) -> "SteadyDancerPipeline":
        r"""Load from any supported layout (see :func:`resolve_weights`): a diffusers-format folder or
        repo (``model_index.json``); the complete official checkpoint folder
        (``MCG-NJU/SteadyDancer-14B`` as released: transformer + the T5 / CLIP / VAE ``.pth`` files +
        ``google/umt5-xxl/``), loaded as-is with nothing downloaded; or a SteadyDancer transformer
        folder/repo (``config.json`` + ``diffusion_pytorch_model*.safetensors``) or a GGUF transformer
        file (``.gguf``, or ``repo::file.gguf``; its linear weights stay quantized, computed in
        ``torch_dtype``) plus the encoders of a Wan2.1-I2V diffusers folder/repo (or, for a GGUF
        file, of the official folder). Downloads only the files needed (once, with progress),
        honours ``HF_HUB_OFFLINE``. The transformer and text encoder load in ``torch_dtype``; the VAE
        and CLIP stay float32. ``clip_heads``: head count of an official CLIP file that is not the
        released ViT-H/14 (not stored in its weights). Raises
        :class:`~steadydancer.errors.MissingWeightsError` with instructions when weights are missing.
        """
        from diffusers import UniPCMultistepScheduler
        from transformers import AutoTokenizer

        from .weights import resolve_weights

        location = resolve_weights(model, encoders, offline=offline, cache_dir=cache_dir, revision=revision)
        if location.pipeline_dir is not None:
            return cls.from_pretrained(
                location.pipeline_dir,
                dtype={"default": torch_dtype, "vae": torch.float32, "image_encoder": torch.float32},
            )
        if location.transformer_file is not None:
            from diffusers import GGUFQuantizationConfig

            transformer = SteadyDancerTransformer3DModel.from_single_file(
                str(location.transformer_file), quantization_config=GGUFQuantizationConfig(compute_dtype=torch_dtype)
            )
            transformer_root = Path(location.transformer_file).parent
        else:
            transformer = SteadyDancerTransformer3DModel.from_pretrained(
                str(location.transformer_dir), torch_dtype=torch_dtype
            )
            transformer_root = Path(location.transformer_dir).parent
        if location.official_encoders_dir is not None:
            from .models.official_encoders import load_official_encoders

            encoders = load_official_encoders(location.official_encoders_dir, text_encoder_dtype=torch_dtype,
                                              clip_heads=clip_heads)
            return cls(scheduler=build_scheduler(SOLVER.default, SHIFT_DEFAULT), transformer=transformer, **encoders)
        enc = location.encoders_dir
        scheduler_dir = transformer_root / "scheduler"
        if (Path(enc) / "scheduler" / "scheduler_config.json").is_file():
            scheduler_dir = Path(enc) / "scheduler"
        if (scheduler_dir / "scheduler_config.json").is_file():
            scheduler = UniPCMultistepScheduler.from_pretrained(str(scheduler_dir))
        else:
            scheduler = build_scheduler(SOLVER.default, SHIFT_DEFAULT)
        image_processor = None
        if (Path(enc) / "image_processor").is_dir():
            from transformers import AutoImageProcessor

            image_processor = AutoImageProcessor.from_pretrained(enc, subfolder="image_processor")
        return cls(
            tokenizer=AutoTokenizer.from_pretrained(enc, subfolder="tokenizer"),
            text_encoder=UMT5EncoderModel.from_pretrained(enc, subfolder="text_encoder", dtype=torch_dtype),
            vae=AutoencoderKLWan.from_pretrained(enc, subfolder="vae", torch_dtype=torch.float32),
            scheduler=scheduler,
            image_encoder=CLIPVisionModel.from_pretrained(enc, subfolder="image_encoder", dtype=torch.float32),
            transformer=transformer,
            image_processor=image_processor,
        )
