"""The SteadyDancer transformer (MCG-NJU/SteadyDancer, built on Wan2.1-I2V-14B) on diffusers' Wan pieces.

What is diffusers' own, reused as is: ``WanTransformerBlock`` (self-attention with 3-D RoPE,
I2V cross-attention, FFN, AdaLN modulation), ``WanRotaryPosEmbed``, ``WanTimeTextImageEmbedding``
(time, text and CLIP-image embedders), ``WanAttention`` and the attention dispatcher (so
``set_attention_backend("flash" | "xformers" | ...)`` works), the output norm / projection layout.

What SteadyDancer adds (see :mod:`steadydancer.models.pose_modules` for the pose modules):

* the pose branch -- ``condition_embedding_temporal`` / ``_spatial`` / ``_align`` -- whose outputs
  join the noisy latent and the image condition in ``patch_embedding_fuse`` (68 channels);
* two reference frames appended after the video frames: the reference-image block ``ref_x``
  through ``patch_embedding`` (the Wan I2V patch embedding, 36 channels) and the first-pose block
  ``ref_c`` through ``patch_embedding_ref_c``; RoPE spans the ``F + 2`` frames and only the first
  ``F`` frames are returned;
* the CLIP context is the *sum* of the embeddings of the reference image and of the first pose
  frame (257 tokens);
* the text is zero-padded to ``text_len`` *before* the text embedding, with no attention mask
  (official behaviour: the padded rows become a constant embedding that is attended to);
* a float64, cos-first timestep sinusoid.

Module names are diffusers' Wan names for the Wan backbone and the official names for the
SteadyDancer additions; :mod:`steadydancer.models.loading` holds the key mapping and loads the
official checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
    WanTransformerBlock,
    _get_added_kv_projections,
    _get_qkv_projections,
)
from diffusers.utils import apply_lora_scale

from .pose_modules import FramewiseAttentionAlignment, SpatialStructureAdaptiveExtractor, temporal_motion_coherence

__all__ = [
    "SteadyDancerAttnProcessor",
    "SteadyDancerTransformer3DModel",
    "capture_intermediates",
    "unpatchify",
]

#: Tokens of the CLIP ViT-H/14 image encoder output (256 patches + class token).
CLIP_IMAGE_TOKENS = 257


class SteadyDancerAttnProcessor(WanAttnProcessor):
    r"""diffusers' Wan attention processor with the image/text split of the I2V cross-attention at
    ``len(context) - text_len`` instead of diffusers' hard-coded ``len(context) - 512``.

    The context is ``[image tokens ; text_len text tokens]``; queries attend to the text tokens
    (``to_k``/``to_v``/``norm_k``) and separately to the image tokens (``add_k_proj``/``add_v_proj``/
    ``norm_added_k``) -- two independent softmaxes, no masks -- and the two results are summed before
    ``to_out``. For the real model (``text_len = 512``) this is exactly ``WanAttnProcessor``. Without
    added K/V projections (self-attention) it defers to ``WanAttnProcessor`` unchanged.
    """

    def __init__(self, text_len: int = 512):
        super().__init__()
        self.text_len = text_len

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if attn.add_k_proj is None or encoder_hidden_states is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

        # 1. Split the context: [image tokens ; text tokens].
        image_context_length = encoder_hidden_states.shape[1] - self.text_len
        encoder_hidden_states_img = encoder_hidden_states[:, :image_context_length]
        encoder_hidden_states = encoder_hidden_states[:, image_context_length:]

        # 2. Projections; RMSNorm over all heads before the split into heads.
        query, key, value = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        key_img, value_img = _get_added_kv_projections(attn, encoder_hidden_states_img)
        key_img = attn.norm_added_k(key_img).unflatten(2, (attn.heads, -1))
        value_img = value_img.unflatten(2, (attn.heads, -1))

        # 3. Two independent attentions, summed.
        hidden_states_img = dispatch_attention_fn(
            query, key_img, value_img, attn_mask=None, dropout_p=0.0, is_causal=False, backend=self._attention_backend
        )
        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query) + hidden_states_img.flatten(2, 3).type_as(query)

        # 4. Output projection.
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


class SinusoidalTimestepEmbedding(nn.Module):
    r"""``[cos(t w_j) | sin(t w_j)]`` with ``w_j = 10000^(-j / half)``, computed in float64 (cos first).

    diffusers' ``Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`` has the same layout but
    computes in float32; the official model computes in float64. Returns float64 ``[B, dim]``
    (float32 on MPS, which has no float64).
    """

    def __init__(self, num_channels: int, max_period: float = 10000.0):
        super().__init__()
        self.num_channels = num_channels
        self.max_period = max_period

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        dtype = torch.float32 if timesteps.device.type == "mps" else torch.float64  # MPS has no float64
        position = timesteps.to(dtype)
        exponent = torch.arange(half, dtype=dtype, device=timesteps.device) / half
        angles = torch.outer(position, torch.pow(self.max_period, -exponent))
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch_size: tuple[int, int, int], channels: int
) -> torch.Tensor:
    r"""``[B, f*h*w, pt*ph*pw*C]`` tokens (values ordered ``(pt, ph, pw, C)``, C fastest) to a
    ``[B, C, f*pt, h*ph, w*pw]`` video; tokens are frame-major, row-major ``(f, h, w)``."""
    (f, h, w), (p_t, p_h, p_w) = grid, patch_size
    video = tokens.reshape(tokens.shape[0], f, h, w, p_t, p_h, p_w, channels)
    video = video.permute(0, 7, 1, 4, 2, 5, 3, 6)
    return video.flatten(6, 7).flatten(4, 5).flatten(2, 3)


def _match_batch(tensor: torch.Tensor, batch_size: int, name: str) -> torch.Tensor:
    if tensor.shape[0] == batch_size:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(batch_size, *tensor.shape[1:])
    raise ValueError(f"`{name}` has batch size {tensor.shape[0]}, expected {batch_size} (or 1, broadcast).")


class SteadyDancerTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, CacheMixin, AttentionMixin):
    r"""
    The SteadyDancer video transformer: Wan2.1 I2V with pose conditioning and two reference frames.

    Defaults are the released 14B model (Wan2.1-I2V-14B sizes). Official config names map as
    ``dim = num_attention_heads * attention_head_dim``, ``in_dim -> in_channels``,
    ``in_dim_c -> pose_channels``, ``out_dim -> out_channels``, ``num_heads -> num_attention_heads``;
    the others keep their names (see :func:`steadydancer.models.loading.official_config_to_diffusers`).

    Args:
        patch_size (`tuple[int]`, defaults to `(1, 2, 2)`): 3-D patch (t, h, w).
        num_attention_heads (`int`, defaults to `40`): attention heads.
        attention_head_dim (`int`, defaults to `128`): channels per head.
        in_channels (`int`, defaults to `36`): noisy latent (16) + image condition (4 mask + 16); also the
            channels of the reference-image block ``ref_x``.
        pose_channels (`int`, defaults to `16`): channels of the pose latent.
        out_channels (`int`, defaults to `16`): latent channels predicted (and of the noisy latent).
        text_dim (`int`, defaults to `4096`): text-encoder width (UMT5-XXL).
        text_len (`int`, defaults to `512`): text tokens after zero-padding.
        freq_dim (`int`, defaults to `256`): sinusoidal timestep embedding width.
        ffn_dim (`int`, defaults to `13824`): feed-forward width.
        num_layers (`int`, defaults to `40`): transformer blocks.
        cross_attn_norm (`bool`, defaults to `True`): affine LayerNorm before the cross-attention.
        qk_norm (`str`, defaults to `"rms_norm_across_heads"`): the only supported q/k norm.
        eps (`float`, defaults to `1e-6`): epsilon of the Wan LayerNorms and RMSNorms.
        image_dim (`int`, defaults to `1280`): CLIP ViT-H/14 token width.
        rope_max_seq_len (`int`, defaults to `1024`): rotary table length per axis.
        pose_align_dim (`int`, defaults to `128`), pose_align_heads (`int`, defaults to `8`): width and heads
            of the frame-wise attention alignment unit.
    """

    _supports_gradient_checkpointing = True
    # Patch embeddings, the pose modules, the embedders and every norm stay in full precision under
    # `enable_layerwise_casting` (all small; the pose modules hold an nn.MultiheadAttention, whose packed
    # in-projection the casting hooks would not handle).
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "condition_embedding", "norm"]
    _no_split_modules = ["WanTransformerBlock"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _keys_to_ignore_on_load_unexpected = ["norm_added_q"]
    _repeated_blocks = ["WanTransformerBlock"]
    # Context parallelism (``enable_parallelism(config=ContextParallelConfig(...))``): everything before
    # the blocks runs whole on every rank -- the pose branch (the frame-wise alignment unit attends over
    # all frames at each pixel, so it cannot be split), the three patch embeddings, the two reference
    # frames, RoPE over F + 2 frames and the text/CLIP context; then the rotary tables and the token
    # sequence entering the first block are split along the sequence, the self-attention runs
    # Ulysses/ring across ranks, the cross-attention runs locally against the whole context, and the
    # sequence is gathered again after ``proj_out``. (diffusers' Wan plan, without its per-token
    # timestep entry: SteadyDancer's timestep is one value per sample.)
    _cp_plan = {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False),
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 36,
        pose_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        text_len: int = 512,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int = 1280,
        rope_max_seq_len: int = 1024,
        pose_align_dim: int = 128,
        pose_align_heads: int = 8,
    ) -> None:
        super().__init__()
        if qk_norm != "rms_norm_across_heads":
            raise ValueError(f"qk_norm={qk_norm!r} is not supported: SteadyDancer uses 'rms_norm_across_heads'.")
        if attention_head_dim % 2:
            raise ValueError(f"attention_head_dim must be even for the rotary embedding, got {attention_head_dim}.")
        patch_size = tuple(int(p) for p in patch_size)
        self.register_to_config(patch_size=patch_size)  # JSON gives a list back; keep a tuple
        inner_dim = num_attention_heads * attention_head_dim
        patch_volume = math.prod(patch_size)

        # 1. Rotary embedding, applied on the token grid (hence patch (1, 1, 1)): F + 2 frames.
        self.rope = WanRotaryPosEmbed(attention_head_dim, (1, 1, 1), rope_max_seq_len)

        # 2. Patch embeddings: fused video input, reference image block, reference pose block.
        self.patch_embedding_fuse = nn.Conv3d(
            in_channels + 2 * pose_channels, inner_dim, kernel_size=patch_size, stride=patch_size
        )
        self.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.patch_embedding_ref_c = nn.Conv3d(pose_channels, inner_dim, kernel_size=patch_size, stride=patch_size)

        # 3. Pose modules (Synergistic Pose Modulation).
        self.condition_embedding_spatial = SpatialStructureAdaptiveExtractor(pose_channels)
        self.condition_embedding_temporal = temporal_motion_coherence(pose_channels)
        self.condition_embedding_align = FramewiseAttentionAlignment(
            pose_channels=pose_channels,
            latent_channels=out_channels,
            hidden_dim=pose_align_dim,
            num_heads=pose_align_heads,
        )

        # 4. Time / text / image embeddings (diffusers' Wan), with the official float64 sinusoid.
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=inner_dim,
            time_freq_dim=freq_dim,
            time_proj_dim=inner_dim * 6,
            text_embed_dim=text_dim,
            image_embed_dim=image_dim,
        )
        self.condition_embedder.timesteps_proj = SinusoidalTimestepEmbedding(freq_dim)

        # 5. Transformer blocks (diffusers' Wan); the I2V cross-attention splits the context by text_len.
        self.blocks = nn.ModuleList(
            [
                WanTransformerBlock(
                    inner_dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps, added_kv_proj_dim=inner_dim
                )
                for _ in range(num_layers)
            ]
        )
        for block in self.blocks:
            block.attn2.set_processor(SteadyDancerAttnProcessor(text_len))

        # 6. Output norm & projection.
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, out_channels * patch_volume)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)

        self.gradient_checkpointing = False

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        r"""Load the official checkpoint folder (official ``config.json`` names, sharded
        ``diffusion_pytorch_model*.safetensors`` with official key names) or this class's own
        ``save_pretrained`` output (delegated to diffusers' ``ModelMixin.from_pretrained``).

        The official path builds the model on the meta device and fills it shard by shard in
        ``torch_dtype`` (peak RAM about one model in that dtype). See
        :func:`steadydancer.models.loading.load_pretrained`.
        """
        from .loading import load_pretrained

        return load_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained_diffusers(cls, pretrained_model_name_or_path, **kwargs):
        # diffusers' own loader, for checkpoints written by `save_pretrained` (diffusers names).
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_single_file(cls, pretrained_model_link_or_path, **kwargs):
        r"""Load one ``.safetensors`` file with official key names (an optional common prefix such as
        ``model.diffusion_model.`` is stripped), as community bf16 / fp16 / fp8-scaled repacks ship it
        (see :func:`steadydancer.models.loading.load_single_file`), or a community ``.gguf`` file
        (architecture ``wan``, official names, quantized 2-D weights, the 5-D Conv3d weights appended),
        whose linear weights stay packed and are dequantized per layer at compute time::

            SteadyDancerTransformer3DModel.from_single_file(
                "SteadyDancer-14B-Q4_K_M.gguf", quantization_config=GGUFQuantizationConfig(compute_dtype=torch.bfloat16)
            )

        (see :func:`steadydancer.models.gguf.load_gguf_file`)."""
        from .gguf import is_gguf_path, load_gguf_file
        from .loading import load_single_file

        if is_gguf_path(pretrained_model_link_or_path):
            for ignored in ("low_cpu_mem_usage", "local_files_only"):
                kwargs.pop(ignored, None)
            if "dtype" in kwargs:
                kwargs["torch_dtype"] = kwargs.pop("dtype")
            return load_gguf_file(cls, pretrained_model_link_or_path, **kwargs)
        if kwargs.get("quantization_config") is not None:
            raise TypeError("quantization_config is only for .gguf files (a GGUFQuantizationConfig).")
        kwargs.pop("quantization_config", None)
        return load_single_file(cls, pretrained_model_link_or_path, **kwargs)

    # ------------------------------------------------------------------------------------------ forward
    def _embed_pose(
        self, pose_latents: torch.Tensor, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Hierarchical aggregation (1): pose + temporal(pose) + spatial(pose); then alignment with x.
        condition_temporal = self.condition_embedding_temporal(pose_latents)
        condition_spatial = self.condition_embedding_spatial(pose_latents)
        condition_fused = pose_latents + condition_temporal + condition_spatial
        condition_aligned = self.condition_embedding_align(condition_fused, hidden_states)
        return condition_fused, condition_aligned

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor,
        encoder_hidden_states_image_pose: torch.Tensor,
        image_condition: torch.Tensor,
        pose_latents: torch.Tensor,
        ref_image_latents: torch.Tensor,
        ref_pose_latents: torch.Tensor,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        r"""
        The [`SteadyDancerTransformer3DModel`] forward method. Every sample of a batch is computed
        independently (batched guidance passes give the batch-1 results). Conditioning inputs with batch
        size 1 are broadcast to the batch; float inputs are cast to ``hidden_states.dtype``.

        Args:
            hidden_states (`torch.Tensor` of shape `(B, out_channels, F, h, w)`):
                Noisy video latent (official ``x``), ``h`` and ``w`` multiples of the patch size.
            timestep (`torch.Tensor` of shape `(B,)`, `(1,)` or `()`):
                Timesteps (int64 from the scheduler, or float); a single value is broadcast to ``B``.
            encoder_hidden_states (`torch.Tensor` of shape `(B, L_text, text_dim)`):
                Text-encoder output, ``L_text <= text_len``; zero-padded to ``text_len`` here (official
                behaviour: no mask, the padded rows are attended to). Rows already zero-padded are the same.
            encoder_hidden_states_image (`torch.Tensor` of shape `(B, 257, image_dim)`):
                CLIP tokens of the reference image (official ``clip_fea_x``).
            encoder_hidden_states_image_pose (`torch.Tensor` of shape `(B, 257, image_dim)`):
                CLIP tokens of the first pose frame (official ``clip_fea_c``); its embedding is *added* to
                the reference image's.
            image_condition (`torch.Tensor` of shape `(B, in_channels - out_channels, F, h, w)`):
                Official ``y``: 4 mask channels + 16 image-latent channels.
            pose_latents (`torch.Tensor` of shape `(B, pose_channels, F, h, w)`):
                VAE latent of the pose video (official ``condition``).
            ref_image_latents (`torch.Tensor` of shape `(B, in_channels, 1, h, w)`):
                Reference-image block (official ``ref_x``).
            ref_pose_latents (`torch.Tensor` of shape `(B, C >= pose_channels, 1, h, w)`):
                Reference-pose block (official ``ref_c``); only its first ``pose_channels`` channels are used.
            attention_kwargs (`dict`, *optional*):
                Only ``scale`` (the LoRA scale) is read.
            return_dict (`bool`, defaults to `True`):
                Return a [`~models.modeling_outputs.Transformer2DModelOutput`] instead of a tuple.

        Returns:
            `Transformer2DModelOutput` with ``sample`` of shape `(B, out_channels, F, h, w)` (flow
            prediction for the ``F`` video frames; the two reference frames are dropped), or a 1-tuple.
        """
        # 1. Shapes, batch broadcasting and dtypes.
        if hidden_states.ndim != 5:
            raise ValueError(f"`hidden_states` must be [B, C, F, h, w], got shape {tuple(hidden_states.shape)}.")
        batch_size, _, num_frames, height, width = hidden_states.shape
        dtype = hidden_states.dtype
        p_t, p_h, p_w = self.config.patch_size
        if num_frames % p_t or height % p_h or width % p_w:
            raise ValueError(f"Latent (F, h, w) = {(num_frames, height, width)} is not divisible by {(p_t, p_h, p_w)}.")

        inputs = {
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_hidden_states_image": encoder_hidden_states_image,
            "encoder_hidden_states_image_pose": encoder_hidden_states_image_pose,
            "image_condition": image_condition,
            "pose_latents": pose_latents,
            "ref_image_latents": ref_image_latents,
            "ref_pose_latents": ref_pose_latents,
        }
        inputs = {name: _match_batch(value, batch_size, name).to(dtype) for name, value in inputs.items()}
        self._check_shapes(hidden_states, **inputs)
        timestep = torch.as_tensor(timestep, device=hidden_states.device).reshape(-1)
        timestep = _match_batch(timestep, batch_size, "timestep")

        # 2. Pose branch and patch embeddings: [F video frames, ref image frame, ref pose frame].
        condition_fused, condition_aligned = self._embed_pose(inputs["pose_latents"], hidden_states)
        video = self.patch_embedding_fuse(
            torch.cat([hidden_states, inputs["image_condition"], condition_fused, condition_aligned], dim=1)
        )
        ref_image = self.patch_embedding(inputs["ref_image_latents"])
        ref_pose = self.patch_embedding_ref_c(inputs["ref_pose_latents"][:, : self.config.pose_channels])
        tokens = torch.cat([video, ref_image, ref_pose], dim=2)  # B, D, F+2, h', w'
        grid = tuple(tokens.shape[2:])

        # 3. Rotary embedding over the (F + 2, h', w') grid; tokens frame-major, row-major.
        rotary_emb = self.rope(tokens)
        hidden_states = tokens.flatten(2).transpose(1, 2).contiguous()

        # 4. Time, text and image embeddings; context = [CLIP(ref image) + CLIP(first pose) ; text].
        text = inputs["encoder_hidden_states"]
        if text.shape[1] > self.config.text_len:
            raise ValueError(f"Text has {text.shape[1]} tokens, more than text_len={self.config.text_len}.")
        text = F.pad(text, (0, 0, 0, self.config.text_len - text.shape[1]))
        clip_tokens = torch.cat([inputs["encoder_hidden_states_image"], inputs["encoder_hidden_states_image_pose"]])
        temb, timestep_proj, text_context, image_context = self.condition_embedder(timestep, text, clip_tokens)
        image_context = sum(image_context.chunk(2))
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        encoder_hidden_states = torch.cat([image_context, text_context], dim=1)

        # 5. Transformer blocks.
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, timestep_proj, rotary_emb
                )
            else:
                hidden_states = block(hidden_states, encoder_hidden_states, timestep_proj, rotary_emb)

        # 6. Output norm (modulated by temb, not timestep_proj), projection, unpatchify, drop ref frames.
        shift, scale = (self.scale_shift_table.float() + temb.float().unsqueeze(1)).chunk(2, dim=1)
        shift, scale = shift.to(hidden_states.device), scale.to(hidden_states.device)
        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        output = unpatchify(hidden_states, grid, (p_t, p_h, p_w), self.config.out_channels)
        output = output[:, :, :num_frames]

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _check_shapes(self, hidden_states: torch.Tensor, **inputs: torch.Tensor) -> None:
        config = self.config
        _, channels, num_frames, height, width = hidden_states.shape
        expected = {
            "hidden_states": (hidden_states, (config.out_channels, num_frames, height, width)),
            "image_condition": (inputs["image_condition"], (config.in_channels - channels, num_frames, height, width)),
            "pose_latents": (inputs["pose_latents"], (config.pose_channels, num_frames, height, width)),
            "ref_image_latents": (inputs["ref_image_latents"], (config.in_channels, 1, height, width)),
            "ref_pose_latents": (inputs["ref_pose_latents"], (None, 1, height, width)),
            "encoder_hidden_states": (inputs["encoder_hidden_states"], (None, config.text_dim)),
            "encoder_hidden_states_image": (inputs["encoder_hidden_states_image"], (None, config.image_dim)),
            "encoder_hidden_states_image_pose": (inputs["encoder_hidden_states_image_pose"], (None, config.image_dim)),
        }
        for name, (tensor, shape) in expected.items():
            actual = tuple(tensor.shape[1:])
            if len(actual) != len(shape) or any(e is not None and a != e for a, e in zip(actual, shape)):
                wanted = "[B, " + ", ".join("*" if e is None else str(e) for e in shape) + "]"
                raise ValueError(f"`{name}` has shape {tuple(tensor.shape)}, expected {wanted}.")
        if inputs["ref_pose_latents"].shape[1] < config.pose_channels:
            raise ValueError(f"`ref_pose_latents` needs at least {config.pose_channels} channels.")
        if inputs["encoder_hidden_states_image"].shape[1] != inputs["encoder_hidden_states_image_pose"].shape[1]:
            raise ValueError("The two CLIP inputs must have the same number of tokens (257).")


@torch.no_grad()
def capture_intermediates(
    model: SteadyDancerTransformer3DModel, **forward_kwargs: Any
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Run ``model(**forward_kwargs)`` and return ``(output, intermediates)`` for debugging and the
    reference tests, using forward hooks (the production forward is untouched).

    Intermediates (batched, named as in the reference fixture): ``condition_temporal``,
    ``condition_spatial``, ``condition_fused``, ``condition_aligned`` (``[B, C, F, h, w]``),
    ``grid_sizes`` (``[B, 3]``: ``F + 2, h', w'``), ``hidden_states_pre_blocks`` and
    ``hidden_states_block0`` (``[B, L, dim]``), ``temb`` (``[B, dim]``), ``timestep_proj``
    (``[B, 6, dim]``), ``text_context`` (``[B, text_len, dim]``), ``image_context``
    (``[B, 257, dim]``), ``output_all_frames`` (``[B, C_out, F + 2, h, w]``).
    """
    found: dict[str, torch.Tensor] = {}
    config = model.config

    def output_hook(name, transform=lambda t: t):
        def hook(module, args, output):
            found[name] = transform(output).detach().clone()

        return hook

    def rope_pre_hook(module, args):
        tokens = args[0]
        found["grid_sizes"] = torch.tensor([list(tokens.shape[2:])] * tokens.shape[0], dtype=torch.long)

    def align_pre_hook(module, args):
        found["condition_fused"] = args[0].detach().clone()

    def block0_pre_hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        context = args[1] if len(args) > 1 else kwargs["encoder_hidden_states"]
        found["hidden_states_pre_blocks"] = hidden.detach().clone()
        found["image_context"] = context[:, : context.shape[1] - config.text_len].detach().clone()

    def proj_out_hook(module, args, output):
        grid = tuple(found["grid_sizes"][0].tolist())
        found["output_all_frames"] = unpatchify(output, grid, tuple(config.patch_size), config.out_channels).clone()

    embedder = model.condition_embedder
    handles = [
        model.condition_embedding_temporal.register_forward_hook(output_hook("condition_temporal")),
        model.condition_embedding_spatial.register_forward_hook(output_hook("condition_spatial")),
        model.condition_embedding_align.register_forward_pre_hook(align_pre_hook),
        model.condition_embedding_align.register_forward_hook(output_hook("condition_aligned")),
        model.rope.register_forward_pre_hook(rope_pre_hook),
        model.blocks[0].register_forward_pre_hook(block0_pre_hook, with_kwargs=True),
        model.blocks[0].register_forward_hook(output_hook("hidden_states_block0")),
        embedder.time_embedder.register_forward_hook(output_hook("temb")),
        embedder.time_proj.register_forward_hook(output_hook("timestep_proj", lambda t: t.unflatten(1, (6, -1)))),
        embedder.text_embedder.register_forward_hook(output_hook("text_context")),
        model.proj_out.register_forward_hook(proj_out_hook),
    ]
    try:
        output = model(**forward_kwargs, return_dict=False)[0]
    finally:
        for handle in handles:
            handle.remove()
    return output, found
