"""SteadyDancer's pose-conditioning modules (the "Synergistic Pose Modulation Modules").

Three small networks turn the pose latent (``condition``, ``[B, C, F, h, w]``) into the two extra
16-channel inputs of the fused patch embedding:

* :func:`temporal_motion_coherence` -- three factorised (2+1)-D convolutions;
* :class:`SpatialStructureAdaptiveExtractor` -- dynamic channel fusion, one latent frame at a time;
* :class:`FramewiseAttentionAlignment` -- at every pixel, the noisy latent's frames attend over the
  fused pose's frames.

Attribute names follow the official checkpoint (``condition_embedding_spatial.fc.1.fc.0`` ...), so
these modules load the official weights under their own key names. Every module works on batches
sample by sample: nothing here ever mixes two samples of a batch (the official alignment unit
would, if it were called with batch > 1 -- see :class:`FramewiseAttentionAlignment`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class HardSigmoid(nn.Module):
    r"""SteadyDancer's hard sigmoid: ``relu6(x + 3) / 3`` -- range [0, 2], *not* the usual ``/ 6``.

    The checkpoint was trained with this scaling; ``/ 6`` moves the model output by ~0.1.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 3.0


class SqueezeExcite(nn.Module):
    r"""``x * hard_sigmoid(W x)`` on a vector (``fc.0``: Linear without bias)."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels, bias=False), HardSigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


def dynamic_fusion_sizes(channels: int, fc_squeeze: int = 8) -> tuple[int, int]:
    r"""(subspace size ``k``, squeeze width) of the dynamic channel fusion for ``channels -> channels``.

    The official sizing rule (same in and out channels, one pooled value per channel): start from
    ``k = channels / 2``, halve the divisor while ``k^2 > 2 * channels``, at least 4; the squeeze width
    is ``max(channels, k^2) / fc_squeeze``, at least 4. For 16 channels: ``k = 4``, squeeze ``4``.
    """
    reduction = 2
    subspace = channels // reduction
    while subspace**2 > channels * 2:
        reduction *= 2
        subspace = channels // reduction
    subspace = max(subspace, 4)
    squeeze = max(max(channels, subspace**2) // fc_squeeze, 4)
    return subspace, squeeze


class SpatialStructureAdaptiveExtractor(nn.Module):
    r"""Spatial Structure Adaptive Extractor: dynamic channel fusion applied to every latent frame.

    For one frame ``X`` (``C x h x w``), with ``k`` from :func:`dynamic_fusion_sizes` and ``hs`` the
    :class:`HardSigmoid`::

        s   = SqueezeExcite(W_fc avgpool(X))             # squeeze vector
        Phi = reshape(W_phi s, k x k)                    # per-frame k x k channel mixing
        a   = hs(W_scale s)                              # per-channel gate, range [0, 2]
        r   = a * conv(X)                                # 1x1 conv C -> C, no bias
        q   = GroupNorm_1(conv_q(X))                     # 1x1 conv C -> k, one channel per group
        z   = GroupNorm_2(Phi @ q) + q
        out = conv_p(z) + r                              # 1x1 conv k -> C

    Both GroupNorms use ``eps = 1e-5`` (the torch default; the output is sensitive to it).

    Input and output: ``[B, C, F, h, w]``; frames are processed independently.
    """

    def __init__(self, channels: int = 16):
        super().__init__()
        subspace, squeeze = dynamic_fusion_sizes(channels)
        self.subspace = subspace

        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv_q = nn.Conv2d(channels, subspace, 1, bias=False)
        self.fc = nn.Sequential(nn.Linear(channels, squeeze, bias=False), SqueezeExcite(squeeze))
        self.fc_phi = nn.Linear(squeeze, subspace**2, bias=False)
        self.fc_scale = nn.Linear(squeeze, channels, bias=False)
        self.hs = HardSigmoid()
        self.conv_p = nn.Conv2d(subspace, channels, 1, bias=False)
        self.bn1 = nn.GroupNorm(num_groups=4, num_channels=subspace)
        self.bn2 = nn.GroupNorm(num_groups=4, num_channels=subspace)

    def forward(self, pose_latents: torch.Tensor) -> torch.Tensor:
        batch_size, channels, num_frames, height, width = pose_latents.shape
        # 1. Frames become independent images: [B*F, C, h, w].
        frames = pose_latents.transpose(1, 2).flatten(0, 1)

        # 2. Per-frame dynamic parameters from the pooled frame.
        squeezed = self.fc(frames.mean(dim=(2, 3)))
        phi = self.fc_phi(squeezed).view(-1, self.subspace, self.subspace)
        scale = self.hs(self.fc_scale(squeezed))[:, :, None, None]

        # 3. Static branch, gated per channel.
        residual = scale * self.conv(frames)

        # 4. Dynamic branch: mix the k-dimensional subspace with Phi.
        subspace = self.bn1(self.conv_q(frames)).flatten(2)
        subspace = self.bn2(torch.matmul(phi, subspace)) + subspace
        out = self.conv_p(subspace.unflatten(2, (height, width))) + residual

        # 5. Frames back on axis 2: [B, C, F, h, w].
        return out.unflatten(0, (batch_size, num_frames)).transpose(1, 2)


class FactorizedConv3d(nn.Module):
    r"""(2+1)-D convolution: depthwise ``1 x k x k`` spatial conv (no bias) -> SiLU -> dense ``k x 1 x 1``
    temporal conv (with bias), both zero-padded to keep the shape."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.spatial = nn.Conv3d(
            channels, channels, (1, kernel_size, kernel_size), padding=(0, pad, pad), groups=channels, bias=False
        )
        self.act = nn.SiLU()
        self.temporal = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(pad, 0, 0), bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.act(self.spatial(x)))


def temporal_motion_coherence(channels: int = 16, num_layers: int = 3) -> nn.Sequential:
    r"""Temporal Motion Coherence module: ``[FactorizedConv3d -> SiLU] x 3`` on the pose latent video.

    A plain ``nn.Sequential`` (so the official key names ``condition_embedding_temporal.0/2/4`` load
    as they are, and diffusers' block-level offloading can slice it). Input and output:
    ``[B, C, F, h, w]``; the output ends with a SiLU.
    """
    layers = []
    for _ in range(num_layers):
        layers += [FactorizedConv3d(channels), nn.SiLU()]
    return nn.Sequential(*layers)


class ChannelLayerNorm(nn.Module):
    r"""LayerNorm over the channels of a ``[N, C, h, w]`` map, per pixel (biased variance), affine with
    ``[1, C, 1, 1]`` parameters. Computed in float32 whatever the storage dtype."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return (x * self.weight.float() + self.bias.float()).to(dtype)


class FramewiseAttentionAlignment(nn.Module):
    r"""Frame-wise Attention Alignment Unit: aligns the pose with the noisy latent, frame against frame.

    Queries come from the noisy latent (``proj_r``), keys and values from the fused pose (``proj_p``),
    each a 1x1 conv to ``hidden_dim`` channels. The attention is an ``nn.MultiheadAttention`` (packed
    ``in_proj_weight`` holding q, k, v) whose *sequence axis is the frame axis*: at every pixel, the
    ``F`` query frames attend over the ``F`` pose frames of that same pixel -- never across pixels,
    and (unlike the official code with batch > 1) never across samples. Then, without a residual
    around the attention::

        out = norm2(a + ffn(a)),  a = norm1(attention)     # channel LayerNorms, eps 1e-5
        out = proj_p_back(out)                             # hidden_dim -> C

    The dropout inside the attention is only active in training mode.

    Args:
        pose_channels: channels of the fused pose (key/value source).
        latent_channels: channels of the noisy latent (query source).
        hidden_dim, num_heads: attention width and heads (official: 128 and 8).
    """

    def __init__(
        self,
        pose_channels: int = 16,
        latent_channels: int = 16,
        hidden_dim: int = 128,
        num_heads: int = 8,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.proj_p = nn.Conv2d(pose_channels, hidden_dim, kernel_size=1)
        self.proj_r = nn.Conv2d(latent_channels, hidden_dim, kernel_size=1)
        self.proj_p_back = nn.Conv2d(hidden_dim, pose_channels, kernel_size=1)
        self.cross_attn = nn.MultiheadAttention(hidden_dim, num_heads=num_heads, dropout=dropout)
        self.ffn_pose = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=1),
            nn.SiLU(),
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=1),
        )
        self.norm1 = ChannelLayerNorm(hidden_dim)
        self.norm2 = ChannelLayerNorm(hidden_dim)

    @staticmethod
    def _frames_as_sequence(features: torch.Tensor, batch_size: int) -> torch.Tensor:
        # [B*F, D, h, w] -> [F, B*h*w, D]: frames are the sequence, (sample, pixel) the batch.
        features = features.unflatten(0, (batch_size, -1))  # B, F, D, h, w
        return features.permute(1, 0, 3, 4, 2).flatten(1, 3)

    def forward(self, pose: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        r"""
        Args:
            pose (`torch.Tensor` of shape `(B, pose_channels, F, h, w)`): fused pose latent (keys, values).
            latents (`torch.Tensor` of shape `(B, latent_channels, F, h, w)`): noisy latent (queries).

        Returns:
            `torch.Tensor` of shape `(B, pose_channels, F, h, w)`.
        """
        batch_size, _, num_frames, height, width = pose.shape

        # 1. Per-frame 1x1 projections on [B*F, C, h, w].
        pose_features = self.proj_p(pose.transpose(1, 2).flatten(0, 1))
        latent_features = self.proj_r(latents.transpose(1, 2).flatten(0, 1))

        # 2. At every pixel of every sample, attention over the frames.
        query = self._frames_as_sequence(latent_features, batch_size)
        key_value = self._frames_as_sequence(pose_features, batch_size)
        aligned = self.cross_attn(query, key_value, key_value, need_weights=False)[0]

        # 3. Back to per-frame maps [B*F, D, h, w], then norm, FFN, norm, projection.
        aligned = aligned.unflatten(1, (batch_size, height, width)).permute(1, 0, 4, 2, 3).flatten(0, 1)
        aligned = self.norm1(aligned)
        aligned = self.norm2(aligned + self.ffn_pose(aligned))
        aligned = self.proj_p_back(aligned)

        # 4. [B, C, F, h, w].
        return aligned.unflatten(0, (batch_size, num_frames)).transpose(1, 2)
