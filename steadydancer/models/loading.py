"""Checkpoint formats of the SteadyDancer transformer: official names <-> module names, loaders.

Formats read (all into :class:`~steadydancer.models.transformer_steadydancer.SteadyDancerTransformer3DModel`):

* the **official checkpoint folder** (MCG-NJU/SteadyDancer-14B): ``config.json`` with the official
  constructor names (``dim``, ``in_dim``, ``in_dim_c``, ``num_heads`` ...; ``patch_size``, ``qk_norm``,
  ``cross_attn_norm``, ``text_dim``, ``window_size`` may be absent and then take the official
  defaults) + ``diffusion_pytorch_model*.safetensors`` (one file or shards with their
  ``.index.json``), official key names -- :func:`load_pretrained`;
* a **single ``.safetensors`` file** with official names, optionally under a common prefix such as
  ``model.diffusion_model.`` (community bf16 / fp16 repacks), or with this project's names;
  ComfyUI-style **fp8 "scaled"** files (``float8`` weights + ``<module>.scale_weight``) are
  dequantised properly (``weight.float() * scale_weight``) into the chosen dtype -- :func:`load_single_file`;
* this project's own ``save_pretrained`` output (diffusers' loader).

Loading is low-memory: the model is built on the meta device, the checkpoint headers are checked
first (every missing / unexpected key and shape mismatch is reported before any tensor is read),
then tensors are read one at a time, converted to the target dtype and assigned. Peak RAM is
about one model in the target dtype plus the largest tensor.

Key mapping (official -> module name), ``N`` a block index; everything not listed keeps its name
(``patch_embedding``, ``patch_embedding_fuse``, ``patch_embedding_ref_c``,
``condition_embedding_spatial/temporal/align.*``)::

    text_embedding.0 / .2         condition_embedder.text_embedder.linear_1 / .linear_2
    time_embedding.0 / .2         condition_embedder.time_embedder.linear_1 / .linear_2
    time_projection.1             condition_embedder.time_proj
    img_emb.proj.0 / .1 / .3 / .4 condition_embedder.image_embedder.norm1 / .ff.net.0.proj / .ff.net.2 / .norm2
    head.modulation               scale_shift_table
    head.head                     proj_out
    blocks.N.modulation           blocks.N.scale_shift_table
    blocks.N.self_attn.q/k/v/o    blocks.N.attn1.to_q/to_k/to_v/to_out.0    (norm_q, norm_k keep names)
    blocks.N.cross_attn.q/k/v/o   blocks.N.attn2.to_q/to_k/to_v/to_out.0    (norm_q, norm_k keep names)
    blocks.N.cross_attn.k_img     blocks.N.attn2.add_k_proj
    blocks.N.cross_attn.v_img     blocks.N.attn2.add_v_proj
    blocks.N.cross_attn.norm_k_img blocks.N.attn2.norm_added_k
    blocks.N.norm3                blocks.N.norm2          (affine norm before the cross-attention)
    blocks.N.ffn.0 / .2           blocks.N.ffn.net.0.proj / .net.2

These are diffusers' Wan names, so Wan LoRAs converted by diffusers' Wan LoRA loader target the
same modules.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from ..errors import SteadyDancerInputError

__all__ = [
    "OFFICIAL_CONFIG_DEFAULTS",
    "SteadyDancerCheckpointError",
    "build_empty_model",
    "convert_official_key",
    "convert_to_official_key",
    "describe_wrong_checkpoint",
    "detect_naming",
    "diffusers_config_to_official",
    "find_checkpoint_files",
    "infer_official_config",
    "is_official_config",
    "load_official_folder",
    "load_pretrained",
    "load_single_file",
    "official_config_to_diffusers",
    "official_state_dict",
    "plan_sources",
    "read_config",
    "save_official_checkpoint",
    "to_model_config",
]

#: Constructor defaults of the official ``WanModel`` (``wan/modules/model_dancer.py``), used for any
#: key an official ``config.json`` leaves out (the official class does not even save the last five).
OFFICIAL_CONFIG_DEFAULTS: dict[str, Any] = {
    "model_type": "t2v",
    "text_len": 512,
    "in_dim": 16,
    "in_dim_c": 16,
    "dim": 2048,
    "ffn_dim": 8192,
    "freq_dim": 256,
    "out_dim": 16,
    "num_heads": 16,
    "num_layers": 32,
    "eps": 1e-6,
    "patch_size": (1, 2, 2),
    "qk_norm": True,
    "cross_attn_norm": True,
    "text_dim": 4096,
    "window_size": (-1, -1),
}

#: Wan2.1 models all use 128-wide attention heads; used when a single file comes without a config.
WAN_HEAD_DIM = 128
#: How many names an error message lists per category.
MAX_LISTED_KEYS = 20

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
CONFIG_NAME = "config.json"

_OFFICIAL_TOP_LEVEL = {
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "head.modulation": "scale_shift_table",
    "head.head": "proj_out",
}
_OFFICIAL_BLOCK = {
    "modulation": "scale_shift_table",
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_SAME_NAME_MODULES = (
    "patch_embedding",
    "patch_embedding_fuse",
    "patch_embedding_ref_c",
    "condition_embedding_spatial",
    "condition_embedding_temporal",
    "condition_embedding_align",
)
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")
#: Tensors of fp8 "scaled" files that carry no weight of their own.
_FP8_AUXILIARY_SUFFIXES = (".scale_weight", ".scale_input")
_FP8_MARKER_KEYS = ("scaled_fp8",)
_FP8_DTYPES = tuple(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, name))


class SteadyDancerCheckpointError(SteadyDancerInputError):
    """The weights given are not a (complete, compatible) SteadyDancer transformer checkpoint."""


# ---------------------------------------------------------------------------------------------- keys
def _rename_by_prefix(name: str, table: dict[str, str]) -> str | None:
    # Longest matching module prefix wins ("cross_attn.k_img" before "cross_attn.k").
    for prefix in sorted(table, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return table[prefix] + name[len(prefix) :]
    return None


def convert_official_key(key: str) -> str | None:
    """Module name of an official key (``blocks.3.self_attn.q.weight`` -> ``blocks.3.attn1.to_q.weight``),
    or ``None`` if the key is not part of the official model."""
    if key.split(".", 1)[0] in _SAME_NAME_MODULES:
        return key
    match = _BLOCK_KEY.match(key)
    if match:
        inner = _rename_by_prefix(match.group(2), _OFFICIAL_BLOCK)
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _rename_by_prefix(key, _OFFICIAL_TOP_LEVEL)


_DIFFUSERS_TOP_LEVEL = {v: k for k, v in _OFFICIAL_TOP_LEVEL.items()}
_DIFFUSERS_BLOCK = {v: k for k, v in _OFFICIAL_BLOCK.items()}


def convert_to_official_key(key: str) -> str | None:
    """Official key of a module name (inverse of :func:`convert_official_key`), ``None`` if unknown."""
    if key.split(".", 1)[0] in _SAME_NAME_MODULES:
        return key
    match = _BLOCK_KEY.match(key)
    if match:
        inner = _rename_by_prefix(match.group(2), _DIFFUSERS_BLOCK)
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _rename_by_prefix(key, _DIFFUSERS_TOP_LEVEL)


def official_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under their official key names (what the official code loads)."""
    return {convert_to_official_key(name): tensor for name, tensor in model.state_dict().items()}


# -------------------------------------------------------------------------------------------- config
def is_official_config(config: dict) -> bool:
    """True for a config written by the official ``WanModel`` (``dim``/``in_dim`` names)."""
    return "num_attention_heads" not in config and (
        config.get("_class_name") == "WanModel" or "dim" in config or "in_dim" in config
    )


def official_config_to_diffusers(config: dict) -> dict:
    """Translate an official config (missing keys take :data:`OFFICIAL_CONFIG_DEFAULTS`) to this
    class's constructor arguments. Raises :class:`SteadyDancerCheckpointError` for variants the
    SteadyDancer model cannot be (text-to-video, local attention windows, no q/k norm)."""
    known = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(set(known) - set(OFFICIAL_CONFIG_DEFAULTS))
    if unknown:
        raise SteadyDancerCheckpointError(f"Unknown keys in the official config: {unknown}.")
    cfg = {**OFFICIAL_CONFIG_DEFAULTS, **known}
    if cfg["model_type"] != "i2v":
        raise SteadyDancerCheckpointError(
            f"model_type={cfg['model_type']!r}: SteadyDancer is an image-to-video ('i2v') model; "
            "this config belongs to another Wan model."
        )
    if tuple(cfg["window_size"]) != (-1, -1):
        raise SteadyDancerCheckpointError(f"window_size={cfg['window_size']} (local attention) is not supported.")
    if not cfg["qk_norm"]:
        raise SteadyDancerCheckpointError("qk_norm=False is not supported: SteadyDancer normalises q and k.")
    if cfg["dim"] % cfg["num_heads"]:
        raise SteadyDancerCheckpointError(f"dim={cfg['dim']} is not divisible by num_heads={cfg['num_heads']}.")
    return {
        "patch_size": tuple(cfg["patch_size"]),
        "num_attention_heads": cfg["num_heads"],
        "attention_head_dim": cfg["dim"] // cfg["num_heads"],
        "in_channels": cfg["in_dim"],
        "pose_channels": cfg["in_dim_c"],
        "out_channels": cfg["out_dim"],
        "text_dim": cfg["text_dim"],
        "text_len": cfg["text_len"],
        "freq_dim": cfg["freq_dim"],
        "ffn_dim": cfg["ffn_dim"],
        "num_layers": cfg["num_layers"],
        "cross_attn_norm": bool(cfg["cross_attn_norm"]),
        "qk_norm": "rms_norm_across_heads",
        "eps": cfg["eps"],
    }


def diffusers_config_to_official(config: dict) -> dict:
    """The 16 official constructor arguments for a config of this class (for exporting)."""
    return {
        "model_type": "i2v",
        "patch_size": list(config["patch_size"]),
        "text_len": config["text_len"],
        "in_dim": config["in_channels"],
        "in_dim_c": config["pose_channels"],
        "dim": config["num_attention_heads"] * config["attention_head_dim"],
        "ffn_dim": config["ffn_dim"],
        "freq_dim": config["freq_dim"],
        "text_dim": config["text_dim"],
        "out_dim": config["out_channels"],
        "num_heads": config["num_attention_heads"],
        "num_layers": config["num_layers"],
        "window_size": [-1, -1],
        "qk_norm": True,
        "cross_attn_norm": config["cross_attn_norm"],
        "eps": config["eps"],
    }


def infer_official_config(shapes: dict[str, tuple[int, ...]], text_len: int = 512, eps: float = 1e-6) -> dict:
    """Official config from the tensor shapes of an official state dict (for single files shipped
    without a config). Shapes do not tell the head count: Wan2.1's 128-wide heads are assumed
    (true for the 1.3B and 14B models); pass ``config=`` to the loader otherwise. ``text_len`` and
    ``eps`` are not in the weights either (Wan: 512 and 1e-6)."""
    required = ["patch_embedding.weight", "patch_embedding_ref_c.weight", "text_embedding.0.weight",
                "time_embedding.0.weight", "head.head.weight", "blocks.0.ffn.0.weight", "img_emb.proj.1.weight"]
    absent = [key for key in required if key not in shapes]
    if absent:
        raise SteadyDancerCheckpointError(
            f"Cannot infer the model size from this file: it lacks {absent}. Pass `config=` (a config.json)."
        )
    dim, in_dim, *patch_size = shapes["patch_embedding.weight"]
    if dim % WAN_HEAD_DIM:
        raise SteadyDancerCheckpointError(
            f"dim={dim} is not a multiple of {WAN_HEAD_DIM}, so the head count cannot be inferred: pass `config=`."
        )
    num_layers = 1 + max(int(m.group(1)) for key in shapes if (m := _BLOCK_KEY.match(key)))
    return {
        "model_type": "i2v",
        "patch_size": list(patch_size),
        "text_len": text_len,
        "in_dim": in_dim,
        "in_dim_c": shapes["patch_embedding_ref_c.weight"][1],
        "dim": dim,
        "ffn_dim": shapes["blocks.0.ffn.0.weight"][0],
        "freq_dim": shapes["time_embedding.0.weight"][1],
        "text_dim": shapes["text_embedding.0.weight"][1],
        "out_dim": shapes["head.head.weight"][0] // math.prod(patch_size),
        "num_heads": dim // WAN_HEAD_DIM,
        "num_layers": num_layers,
        "window_size": [-1, -1],
        "qk_norm": "blocks.0.self_attn.norm_q.weight" in shapes,
        "cross_attn_norm": "blocks.0.norm3.weight" in shapes,
        "eps": eps,
    }


def read_config(config: dict | str | os.PathLike) -> dict:
    if isinstance(config, dict):
        return dict(config)
    path = Path(config)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise SteadyDancerCheckpointError(f"No config file at {path}.")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def to_model_config(config: dict) -> dict:
    # Either naming -> this class's constructor arguments.
    if is_official_config(config):
        return official_config_to_diffusers(config)
    return {k: v for k, v in config.items() if not k.startswith("_")}


# ----------------------------------------------------------------------------------------- files
def find_checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The safetensors files of a checkpoint folder: the shards named by
    ``diffusion_pytorch_model.safetensors.index.json``, else ``diffusion_pytorch_model.safetensors``,
    else the ``diffusion_pytorch_model-*.safetensors`` shards."""
    folder = Path(folder)
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        with open(index, encoding="utf-8") as handle:
            weight_map = json.load(handle).get("weight_map", {})
        files = [folder / name for name in sorted(set(weight_map.values()))]
        absent = [str(path.name) for path in files if not path.is_file()]
        if absent:
            raise SteadyDancerCheckpointError(
                f"{index} lists shards that are not in {folder}: {absent[:MAX_LISTED_KEYS]}. Download them all."
            )
        return files
    if (folder / WEIGHTS_NAME).is_file():
        return [folder / WEIGHTS_NAME]
    shards = sorted(folder.glob("diffusion_pytorch_model-*.safetensors"))
    if shards:
        return shards
    other = sorted(p.name for p in folder.iterdir() if p.suffix in {".bin", ".pth", ".pt", ".ckpt", ".gguf"})
    hint = f" (found {other}: only .safetensors is read)" if other else ""
    raise SteadyDancerCheckpointError(
        f"No transformer weights in {folder}: expected {WEIGHTS_NAME} or its shards with {WEIGHTS_INDEX_NAME}{hint}."
    )


# ---------------------------------------------------------------------------------------- loading
class _TensorSource:
    """Where one model tensor comes from: file, key, optional fp8 scale key."""

    __slots__ = ("path", "key", "scale_key", "shape", "dtype")

    def __init__(self, path, key, shape, dtype, scale_key=None):
        self.path, self.key, self.shape, self.dtype, self.scale_key = path, key, shape, dtype, scale_key


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
if hasattr(torch, "float8_e4m3fn"):
    _SAFETENSORS_DTYPES.update({"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2})


def _read_headers(files: Iterable[Path]) -> dict[str, tuple[Path, tuple[int, ...], torch.dtype | None]]:
    from safetensors import safe_open

    headers = {}
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                tensor_slice = handle.get_slice(key)
                headers[key] = (path, tuple(tensor_slice.get_shape()), _SAFETENSORS_DTYPES.get(tensor_slice.get_dtype()))
    return headers


def _common_prefix(keys: Iterable[str]) -> str:
    # The prefix in front of the anchor key present in every SteadyDancer checkpoint (either naming).
    for key in keys:
        if key.endswith("patch_embedding_fuse.weight"):
            return key[: -len("patch_embedding_fuse.weight")]
    return ""


def describe_wrong_checkpoint(keys: list[str]) -> str:
    if any(".lora_" in k or ".lora." in k or k.startswith("lora_") for k in keys):
        return "This looks like a LoRA, not transformer weights: load it with the pipeline's LoRA loader."
    if any(k.endswith(("head.modulation", "blocks.0.modulation", "blocks.0.scale_shift_table")) for k in keys):
        return ("This is a Wan2.1 transformer checkpoint without SteadyDancer's pose modules "
                "(no patch_embedding_fuse / condition_embedding_*): load the SteadyDancer-14B weights instead.")
    return "This is not a SteadyDancer transformer checkpoint (no patch_embedding_fuse weight)."


def _format_keys(title: str, keys: list[str]) -> str:
    keys = sorted(keys)
    listed = ", ".join(keys[:MAX_LISTED_KEYS])
    more = f" ... and {len(keys) - MAX_LISTED_KEYS} more" if len(keys) > MAX_LISTED_KEYS else ""
    return f"{len(keys)} {title}: {listed}{more}"


def plan_sources(
    headers: dict[str, tuple[Path, tuple[int, ...], torch.dtype | None]],
    rename: Callable[[str], str | None],
    expected: dict[str, torch.Tensor],
    source_name: str,
) -> dict[str, _TensorSource]:
    """Map every model tensor to its checkpoint tensor, or raise listing every problem at once."""
    plan: dict[str, _TensorSource] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    mismatched_names: set[str] = set()
    scale_keys = {key for key in headers if key.endswith(".scale_weight")}
    for key, (path, shape, dtype) in headers.items():
        if key.endswith(_FP8_AUXILIARY_SUFFIXES) or key.rsplit(".", 1)[-1] in _FP8_MARKER_KEYS:
            continue
        name = rename(key)
        if name is None or name not in expected:
            unexpected.append(key)
            continue
        if tuple(expected[name].shape) != shape:
            mismatched.append(f"{key} {list(shape)} (model {list(expected[name].shape)})")
            mismatched_names.add(name)
            continue
        scale_key = key[: -len(".weight")] + ".scale_weight" if key.endswith(".weight") else None
        plan[name] = _TensorSource(path, key, shape, dtype, scale_key if scale_key in scale_keys else None)
    missing = [name for name in expected if name not in plan and name not in mismatched_names]
    if unexpected or missing or mismatched:
        problems = []
        if missing:
            problems.append(_format_keys("missing keys", missing))
        if unexpected:
            problems.append(_format_keys("unexpected keys", unexpected))
        if mismatched:
            problems.append(_format_keys("shape mismatches", mismatched))
        hint = ""
        if not any(k.endswith("patch_embedding_fuse.weight") for k in headers):
            hint = " " + describe_wrong_checkpoint(list(headers))
        raise SteadyDancerCheckpointError(
            f"{source_name} does not match the SteadyDancer transformer config. " + "; ".join(problems) + "." + hint
        )
    return plan


def _target_dtype(name: str, source_dtype: torch.dtype | None, torch_dtype: torch.dtype, keep_in_fp32: list[str]):
    if source_dtype is not None and not source_dtype.is_floating_point:
        return source_dtype
    if torch_dtype != torch.float32 and any(module in name.split(".") for module in keep_in_fp32):
        return torch.float32  # as diffusers' from_pretrained does for `_keep_in_fp32_modules`
    return torch_dtype


def _dequantize(weight: torch.Tensor, scale: torch.Tensor, key: str) -> torch.Tensor:
    # fp8 "scaled" checkpoints store weight / scale; scale is one value or one per output row.
    weight, scale = weight.float(), scale.float()
    if scale.numel() == 1:
        return weight * scale.reshape(())
    if scale.numel() == weight.shape[0]:
        return weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    raise SteadyDancerCheckpointError(
        f"Unsupported fp8 scale layout for {key}: scale shape {list(scale.shape)}, weight {list(weight.shape)}."
    )


def build_empty_model(cls, config: dict):
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on the meta device; buffers (the RoPE table) real
        return cls.from_config(config)


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if leaf in module._parameters:
        module._parameters[leaf] = nn.Parameter(tensor, requires_grad=module._parameters[leaf].requires_grad)
    else:
        module._buffers[leaf] = tensor


def _load_into_empty_model(
    cls,
    config: dict,
    headers: dict,
    rename: Callable[[str], str | None],
    source_name: str,
    torch_dtype: torch.dtype | None,
    device: str | torch.device | None,
):
    from safetensors import safe_open

    if isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype.removeprefix("torch."))
    torch_dtype = torch_dtype or torch.float32
    if torch_dtype in _FP8_DTYPES:
        raise SteadyDancerCheckpointError(
            "torch_dtype=float8 is not a compute dtype: load in bfloat16 and call "
            "`model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)`."
        )
    device = torch.device(device or "cpu")

    # 1. Empty model, and a plan checked against every header before reading any tensor.
    model = build_empty_model(cls, config)
    expected = model.state_dict()
    plan = plan_sources(headers, rename, expected, source_name)
    keep_in_fp32 = list(cls._keep_in_fp32_modules or [])

    # 2. Tensors one at a time, file by file: read, dequantise fp8, convert, assign.
    by_file: dict[Path, list[tuple[str, _TensorSource]]] = {}
    for name, source in plan.items():
        by_file.setdefault(source.path, []).append((name, source))
    for path, entries in by_file.items():
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for name, source in entries:
                tensor = handle.get_tensor(source.key)
                if source.scale_key is not None:  # fp8 "scaled": stored weight / scale
                    tensor = _dequantize(tensor, handle.get_tensor(source.scale_key), source.key)
                elif tensor.dtype in _FP8_DTYPES:
                    tensor = tensor.float()
                dtype = _target_dtype(name, tensor.dtype, torch_dtype, keep_in_fp32)
                _assign(model, name, tensor.to(device=device, dtype=dtype).contiguous())
                del tensor

    # 3. Non-persistent buffers (the RoPE table) follow the device; keep their float64 dtype.
    for module in model.modules():
        for buffer_name, buffer in module._buffers.items():
            if buffer is not None and buffer.device != device:
                module._buffers[buffer_name] = buffer.to(device)
    still_meta = [name for name, param in model.named_parameters() if param.is_meta]
    if still_meta:  # cannot happen after the plan check; a real error if it does
        raise RuntimeError(_format_keys("parameters left on the meta device", still_meta))
    model.eval()
    return model


def load_official_folder(
    cls,
    folder: str | os.PathLike,
    torch_dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    config: dict | str | os.PathLike | None = None,
):
    """Load an official checkpoint folder (official ``config.json`` + one or more safetensors files
    with official key names) into ``cls``, low-memory. ``config`` overrides the folder's config."""
    folder = Path(folder)
    raw_config = read_config(config if config is not None else folder)
    model_config = to_model_config(raw_config)
    files = find_checkpoint_files(folder)
    headers = _read_headers(files)
    naming = detect_naming(headers)
    rename = convert_official_key if naming == "official" else (lambda key: key)
    if naming == "official" and "img_emb.proj.0.weight" in headers:
        # The official class hard-codes the CLIP token width (1280); the weights tell the real one.
        model_config["image_dim"] = headers["img_emb.proj.0.weight"][1][0]
    model = _load_into_empty_model(cls, model_config, headers, rename, str(folder), torch_dtype, device)
    model.register_to_config(_name_or_path=str(folder))
    return model


def detect_naming(headers: dict, prefix: str = "") -> str:
    keys = [key[len(prefix):] for key in headers if key.startswith(prefix)]
    if any(key.startswith("condition_embedder.") or ".attn1." in key for key in keys):
        return "diffusers"
    return "official"


def load_single_file(
    cls,
    path: str | os.PathLike,
    torch_dtype: torch.dtype | None = None,
    config: dict | str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **kwargs,
):
    """Load one ``.safetensors`` file into ``cls``, low-memory.

    Key names: official (as released or repacked) or this project's; a common prefix in front of
    every key (``model.diffusion_model.``, ``diffusion_model.`` ...) is stripped. fp8 weights are
    converted to ``torch_dtype``, multiplied by their ``<module>.scale_weight`` when the file is an
    fp8 "scaled" one. ``config`` (a dict or a config.json path, either naming) gives the model size;
    without it the size is read from the tensor shapes (:func:`infer_official_config`), with Wan's
    ``text_len = 512`` and ``eps = 1e-6``.
    """
    for ignored in ("low_cpu_mem_usage", "use_safetensors", "local_files_only"):
        kwargs.pop(ignored, None)
    if "dtype" in kwargs:
        torch_dtype = kwargs.pop("dtype")
    if kwargs:
        raise TypeError(f"from_single_file() got unsupported arguments: {sorted(kwargs)}")
    path = Path(path)
    if not path.is_file():
        raise SteadyDancerCheckpointError(f"No such checkpoint file: {path}.")
    if path.suffix != ".safetensors":
        raise SteadyDancerCheckpointError(f"{path.name}: only .safetensors files are supported.")

    headers = _read_headers([path])
    prefix = _common_prefix(headers)
    naming = detect_naming(headers, prefix)
    to_model_name = convert_official_key if naming == "official" else (lambda key: key)

    def rename(key: str) -> str | None:
        return to_model_name(key[len(prefix):]) if key.startswith(prefix) else None

    if config is not None:
        model_config = to_model_config(read_config(config))
    else:
        shapes = {}
        for key, (_, shape, _) in headers.items():
            if key.startswith(prefix):
                stripped = key[len(prefix):]
                official = stripped if naming == "official" else convert_to_official_key(stripped)
                if official is not None:
                    shapes[official] = shape
        if "patch_embedding_fuse.weight" not in shapes:
            raise SteadyDancerCheckpointError(f"{path.name}: " + describe_wrong_checkpoint(list(headers)))
        model_config = official_config_to_diffusers(infer_official_config(shapes))
    model = _load_into_empty_model(cls, model_config, headers, rename, path.name, torch_dtype, device)
    model.register_to_config(_name_or_path=str(path))
    return model


def _resolve_hub_folder(repo_id: str, subfolder: str | None, hub_kwargs: dict) -> tuple[Path, dict]:
    # Download the config first; the weights only if the repository is in the official format.
    from huggingface_hub import hf_hub_download, snapshot_download

    config_path = hf_hub_download(repo_id, CONFIG_NAME, subfolder=subfolder, **hub_kwargs)
    config = read_config(config_path)
    if not is_official_config(config):
        return Path(config_path).parent, config
    pattern_root = f"{subfolder}/" if subfolder else ""
    root = snapshot_download(
        repo_id,
        allow_patterns=[f"{pattern_root}{CONFIG_NAME}", f"{pattern_root}diffusion_pytorch_model*.safetensors*"],
        **hub_kwargs,
    )
    return Path(root) / (subfolder or ""), config


def load_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
    """``from_pretrained`` for both checkpoint folders: an official one (official ``config.json``) is
    loaded here, low-memory; this project's own ``save_pretrained`` output goes to diffusers'
    ``ModelMixin.from_pretrained`` with the same arguments. Hub repository ids are resolved with
    ``huggingface_hub`` (only the transformer files are fetched)."""
    subfolder = kwargs.get("subfolder")
    hub_keys = ("cache_dir", "token", "revision", "local_files_only", "force_download", "proxies")
    hub_kwargs = {k: kwargs[k] for k in hub_keys if kwargs.get(k) is not None}

    local = Path(pretrained_model_name_or_path)
    if local.is_dir():
        folder = local / subfolder if subfolder else local
        if not (folder / CONFIG_NAME).is_file():
            raise SteadyDancerCheckpointError(f"No {CONFIG_NAME} in {folder}: is this a transformer checkpoint folder?")
        config = read_config(folder)
    elif local.is_file():
        raise SteadyDancerCheckpointError(
            f"{local} is a file: use SteadyDancerTransformer3DModel.from_single_file() for single files."
        )
    else:
        folder, config = _resolve_hub_folder(str(pretrained_model_name_or_path), subfolder, hub_kwargs)

    if not is_official_config(config):
        return cls._from_pretrained_diffusers(pretrained_model_name_or_path, **kwargs)

    torch_dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
    device = kwargs.pop("device", None)
    device_map = kwargs.pop("device_map", None)
    if device_map is not None:
        if not isinstance(device_map, (str, torch.device)):
            raise TypeError("Official checkpoints take a single device (device_map='cuda'), not a device map.")
        device = device_map
    for handled in ("subfolder", "low_cpu_mem_usage", "use_safetensors", "disable_mmap", *hub_keys):
        kwargs.pop(handled, None)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # diffusers' pipeline loader passes many Nones
    if kwargs:
        raise TypeError(f"from_pretrained() of an official checkpoint got unsupported arguments: {sorted(kwargs)}")
    return load_official_folder(cls, folder, torch_dtype=torch_dtype, device=device, config=config)


# ---------------------------------------------------------------------------------------- saving
def save_official_checkpoint(model, folder: str | os.PathLike, max_shard_size: int | str = "10GB") -> None:
    """Write ``model`` as the official code expects it: official ``config.json`` and
    ``diffusion_pytorch_model*.safetensors`` (sharded with an index above ``max_shard_size``)."""
    from huggingface_hub import save_torch_state_dict

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "WanModel", **diffusers_config_to_official(model.config)}
    with open(folder / CONFIG_NAME, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    save_torch_state_dict(
        official_state_dict(model),
        folder,
        filename_pattern="diffusion_pytorch_model{suffix}.safetensors",
        max_shard_size=max_shard_size,
    )
