"""Write SteadyDancer transformers as GGUF files in the community layout (for tests and benchmarks).

The layout ComfyUI-GGUF's ``tools/convert.py`` + ``fix_5d_tensors.py`` produce for Wan models:
``general.architecture = "wan"``, official key names, 1-D tensors, tensors of at most 1024 values
and ``*.modulation`` in F32, 4-D convolution weights in F16, every other tensor quantized with the
chosen type (F16 when its rows do not split into the type's blocks), the 5-D Conv3d weights left
out by the converter and appended afterwards in F32 (each right after its bias, the others at the
end) -- unless ``fix_5d=False``, which writes the file as it is before that step.

The ``gguf`` package quantizes Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 itself; K-quants are only decoded by
it, so :func:`quantize_q4_k` here encodes Q4_K blocks (8 sub-blocks of 32 with 6-bit scales and
mins, the llama.cpp block layout, a simple min/max fit rather than llama.cpp's search).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

QUANTIZATION_THRESHOLD = 1024

#: A transformer whose matrices split into every block size (rows of 128 / 256 / 512 / 1280 values)
#: with the tiny pipeline's encoders (text_dim 16, CLIP width 1280, text_len 16).
GGUF_TEST_CONFIG = dict(num_attention_heads=2, attention_head_dim=128, ffn_dim=512, num_layers=2, freq_dim=256,
                        text_dim=16, text_len=16)


def build_gguf_test_transformer(seed: int = 0):
    """A float32 SteadyDancer transformer of :data:`GGUF_TEST_CONFIG` with random weights of
    realistic scale (fan-in initialisation; norms around 1)."""
    from steadydancer.models.transformer_steadydancer import SteadyDancerTransformer3DModel

    torch.manual_seed(seed)
    model = SteadyDancerTransformer3DModel(**GGUF_TEST_CONFIG).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.05 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in**0.5)
            else:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def quantize_q4_k(values: np.ndarray) -> np.ndarray:
    """Q4_K blocks of a float array whose last dimension is a multiple of 256 (bytes, 144 per 256 values)."""
    import gguf

    rows = values.reshape(-1, 256).astype(np.float32)
    sub = rows.reshape(-1, 8, 32)
    low = np.minimum(sub.min(axis=2), 0.0)
    high = sub.max(axis=2)
    scale = (high - low) / 15.0  # per sub-block: value = scale * q - min,  q in 0..15
    minimum = -low
    d = np.maximum(scale.max(axis=1), 1e-12) / 63.0  # 6-bit sub-block scales
    dmin = np.maximum(minimum.max(axis=1), 1e-12) / 63.0
    d16, dmin16 = d.astype(np.float16), dmin.astype(np.float16)
    sc = np.clip(np.round(scale / d16.astype(np.float32)[:, None]), 0, 63).astype(np.uint8)
    mn = np.clip(np.round(minimum / dmin16.astype(np.float32)[:, None]), 0, 63).astype(np.uint8)
    eff_scale = d16.astype(np.float32)[:, None] * sc
    eff_min = dmin16.astype(np.float32)[:, None] * mn
    q = np.round((sub + eff_min[:, :, None]) / np.where(eff_scale > 0, eff_scale, 1)[:, :, None])
    q = np.clip(q, 0, 15).astype(np.uint8)
    # 12 bytes of scales/mins: j < 4 in the low 6 bits of bytes j / j+4; j >= 4 split over byte j+4
    # (low nibbles) and the top 2 bits of bytes j-4 / j.
    packed = np.zeros((rows.shape[0], 12), dtype=np.uint8)
    for j in range(4):
        packed[:, j] = sc[:, j] | ((sc[:, j + 4] >> 4) << 6)
        packed[:, j + 4] = mn[:, j] | ((mn[:, j + 4] >> 4) << 6)
        packed[:, j + 8] = (sc[:, j + 4] & 0x0F) | ((mn[:, j + 4] & 0x0F) << 4)
    # 128 bytes of quants: 4 chunks of 64 values; byte i of chunk c = q[c*64 + i] | q[c*64 + 32 + i] << 4.
    qs = q.reshape(-1, 4, 2, 32)
    nibbles = (qs[:, :, 0, :] | (qs[:, :, 1, :] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d16.view(np.uint8).reshape(-1, 2), dmin16.view(np.uint8).reshape(-1, 2), packed,
                             nibbles], axis=1)
    type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q4_K][1]
    return blocks.reshape(*values.shape[:-1], values.shape[-1] // 256 * type_size)


def _quantize(values: np.ndarray, qtype):
    """(data, type) for one tensor: ``qtype`` when its rows split into blocks, else F16."""
    import gguf

    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if values.shape[-1] % block:
        return values.astype(np.float16), gguf.GGMLQuantizationType.F16
    if qtype == gguf.GGMLQuantizationType.Q4_K:
        return quantize_q4_k(values), qtype
    return gguf.quants.quantize(values, qtype), qtype


def write_community_gguf(model, path: str | os.PathLike, qtype: str = "Q8_0", *, fix_5d: bool = True,
                         arch: str = "wan", prefix: str = "", store_config: bool = True) -> dict[str, str]:
    """Write ``model`` (official names via ``official_state_dict``) to ``path``; returns ``{key: type}``."""
    import gguf

    from steadydancer.models.loading import diffusers_config_to_official, official_state_dict

    qtype = gguf.GGMLQuantizationType[qtype]
    state = {k: v.detach().float().numpy() for k, v in official_state_dict(model).items()}
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(int(qtype))
    if store_config:
        writer.add_string("config", json.dumps({"_class_name": "WanModel", **diffusers_config_to_official(model.config)}))
    types: dict[str, str] = {}

    def add(key, data, dtype):
        writer.add_tensor(prefix + key, data, raw_dtype=dtype)
        types[key] = dtype.name

    five_d = {k: v for k, v in state.items() if v.ndim == 5}
    for key, values in state.items():
        if values.ndim == 5:
            continue  # the converter holds these back (GGUF's quantizer handles at most 4 dimensions)
        if values.ndim == 1 or values.size <= QUANTIZATION_THRESHOLD or ".modulation" in key or key == "head.modulation":
            add(key, values.astype(np.float32), gguf.GGMLQuantizationType.F32)
        elif values.ndim == 4:
            add(key, values.astype(np.float16), gguf.GGMLQuantizationType.F16)
        else:
            add(key, *_quantize(values, qtype))
        weight_key = key.replace(".bias", ".weight")
        if fix_5d and key.endswith(".bias") and weight_key in five_d:
            add(weight_key, five_d.pop(weight_key), gguf.GGMLQuantizationType.F32)
    if fix_5d:
        for key, values in five_d.items():
            add(key, values, gguf.GGMLQuantizationType.F32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types
