"""GGUF transformer files (the community layout for Wan models) -> :class:`SteadyDancerTransformer3DModel`.

The layout the community converters write for Wan2.1 models (and so for SteadyDancer-14B):

* metadata ``general.architecture = "wan"`` (plus ``general.file_type``, ``general.quantization_version``,
  optionally a ``config`` string holding the model's JSON config);
* **official key names** (``blocks.0.self_attn.q.weight`` ...; a common prefix is stripped);
* 2-D weights quantized (Q8_0, Q6_K, Q5_K, Q4_K, Q4_0 ... -- any type diffusers can dequantize),
  1-D tensors, ``*.modulation`` and other small tensors in F32 / F16;
* the **5-D Conv3d weights** (GGUF tensors have at most 4 dimensions for the quantizer) removed by
  the converter and appended afterwards, unquantized, with their 5 dimensions -- the "fix 5d
  tensors" step. SteadyDancer has nine: ``patch_embedding``, ``patch_embedding_fuse``,
  ``patch_embedding_ref_c`` and the ``spatial`` / ``temporal`` convolutions of the three layers of
  ``condition_embedding_temporal`` (:data:`FIVE_D_KEYS`).

Loading goes through diffusers' GGUF machinery (``GGUFQuantizationConfig`` -> ``GGUFQuantizer``,
which swaps every ``nn.Linear`` whose weight arrives quantized for a ``GGUFLinear``; the weights are
``GGUFParameter``s that stay packed on their device and are dequantized layer by layer at compute
time; ``load_model_dict_into_meta`` places the tensors). What this module adds is the glue diffusers
has for the classes of its single-file registry only:

1. read the file memory-mapped (copy-on-write: nothing is copied into RAM until a tensor moves to
   another device), check the architecture, rename official keys, infer the config from the shapes;
2. decide per tensor whether it stays packed: only the weight of a plain ``nn.Linear`` that diffusers
   will swap for a ``GGUFLinear`` does. Everything else that arrives quantized is dequantized here,
   exactly (float32, ``gguf.quants.dequantize``): modules that read their weights directly -- the
   frame-wise alignment unit's ``nn.MultiheadAttention`` (packed ``in_proj_weight`` and the
   ``out_proj`` that ``F.multi_head_attention_forward`` reads), convolutions -- and the
   ``_keep_in_fp32_modules`` (time embedder, modulation tables, affine norms);
3. report a file without the 5-D tensors, or for another architecture, with what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .loading import (
    SteadyDancerCheckpointError,
    build_empty_model,
    convert_official_key,
    convert_to_official_key,
    describe_wrong_checkpoint,
    detect_naming,
    infer_official_config,
    official_config_to_diffusers,
    plan_sources,
    read_config,
    to_model_config,
)

__all__ = [
    "FIVE_D_KEYS",
    "GGUF_ARCHITECTURE",
    "GGUFFile",
    "is_gguf_path",
    "load_gguf_file",
    "read_gguf_file",
]

#: ``general.architecture`` of Wan-family GGUF files (SteadyDancer is a Wan2.1-I2V model).
GGUF_ARCHITECTURE = "wan"
#: Official names of SteadyDancer's Conv3d weights (5-D): appended unquantized by the "fix 5d tensors" step.
FIVE_D_KEYS = (
    "patch_embedding.weight",
    "patch_embedding_fuse.weight",
    "patch_embedding_ref_c.weight",
    *(f"condition_embedding_temporal.{i}.{part}.weight" for i in (0, 2, 4) for part in ("spatial", "temporal")),
)
#: Metadata key prefix of tensors a converter reshaped to rows of 256 (value: the original shape).
ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."


def is_gguf_path(path: str | os.PathLike) -> bool:
    """True for a path (local or ``repo::file``) naming a ``.gguf`` file."""
    return str(path).lower().endswith(".gguf")


# ------------------------------------------------------------------------------------------ reading
class GGUFFile:
    """A GGUF file, memory-mapped: its metadata and, per tensor, the raw data and logical shape.

    ``tensors[name] = (data, quant_type, shape)``: ``data`` is a numpy view into the file (bytes per
    row for quantized types, the values for F32 / F16), ``shape`` the tensor's shape in PyTorch order.
    """

    def __init__(self, path: str | os.PathLike):
        import gguf

        self.path = Path(path)
        try:
            # "c": copy-on-write mapping, so torch can wrap the arrays without a copy or a warning.
            reader = gguf.GGUFReader(self.path, mode="c")
        except (ValueError, OSError) as error:
            raise SteadyDancerCheckpointError(f"{self.path.name} is not a readable GGUF file: {error}") from error
        self.metadata: dict[str, Any] = {}
        for name, field in reader.fields.items():
            if name.startswith("GGUF."):
                continue
            try:
                self.metadata[name] = field.contents()
            except Exception:  # an exotic field type: not needed here
                continue
        self.architecture = self.metadata.get("general.architecture")
        self.tensors: dict[str, tuple[np.ndarray, Any, tuple[int, ...]]] = {}
        #: Tensors stored in another shape (rows of 256) with their original one in the metadata:
        #: their packed rows are not the model's rows, so they are dequantized at load.
        self.reshaped: set[str] = set()
        for tensor in reader.tensors:
            shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))  # GGUF stores ne[0] first
            original = self.metadata.get(ORIG_SHAPE_PREFIX + tensor.name)
            if original is not None:
                shape = tuple(int(n) for n in original)
                self.reshaped.add(tensor.name)
            self.tensors[tensor.name] = (tensor.data, tensor.tensor_type, shape)
        self._reader = reader  # keeps the mapping alive

    def config(self) -> dict | None:
        """The JSON config stored in the file's ``config`` string, if any."""
        raw = self.metadata.get("config")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            return None


def read_gguf_file(path: str | os.PathLike) -> GGUFFile:
    """Open a GGUF file (memory-mapped; raises :class:`SteadyDancerCheckpointError` if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise SteadyDancerCheckpointError(f"No such GGUF file: {path}.")
    return GGUFFile(path)


def _is_unquantized(quant_type) -> bool:
    import gguf

    return quant_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)


def _dequantize_exact(data: np.ndarray, quant_type, shape: tuple[int, ...]) -> torch.Tensor:
    # gguf's reference dequantization (numpy, float32 arithmetic) -- for tensors not kept packed.
    import gguf

    values = gguf.quants.dequantize(np.asarray(data), quant_type)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)


# ------------------------------------------------------------------------------------------ checks
def _check_architecture(file: GGUFFile) -> None:
    if file.architecture != GGUF_ARCHITECTURE:
        found = "no general.architecture" if file.architecture is None else f"architecture {file.architecture!r}"
        raise SteadyDancerCheckpointError(
            f"{file.path.name} has {found}: a SteadyDancer GGUF file is a Wan model (architecture "
            f"{GGUF_ARCHITECTURE!r}). Use a SteadyDancer-14B GGUF file (e.g. from MCG-NJU/SteadyDancer-GGUF)."
        )


def _check_five_d(file: GGUFFile, official_shapes: dict[str, tuple[int, ...]]) -> None:
    missing = [key for key in FIVE_D_KEYS if key not in official_shapes]
    flat = [f"{key} {list(official_shapes[key])}" for key in FIVE_D_KEYS
            if key in official_shapes and len(official_shapes[key]) != 5]
    if missing or flat:
        what = []
        if missing:
            what.append(f"{len(missing)} of its 9 Conv3d (5-D) weights are missing: {', '.join(missing)}")
        if flat:
            what.append(f"these Conv3d weights are not 5-D: {', '.join(flat)}")
        raise SteadyDancerCheckpointError(
            f"{file.path.name}: " + "; ".join(what) + ". GGUF converters take the 5-D tensors out before "
            "quantizing and a second step puts them back unquantized (ComfyUI-GGUF's tools/fix_5d_tensors.py "
            "with the fix_5d_tensors_wan.safetensors file the conversion wrote). Run that step on this file, "
            "or download a file that already had it applied."
        )


# ------------------------------------------------------------------------------------------ loading
def _tensor_prefix(keys) -> str:
    # As loading._common_prefix, with anchors that survive a file whose 5-D tensors were dropped.
    for anchor in ("patch_embedding_fuse.weight", "patch_embedding_fuse.bias", "blocks.0.ffn.0.weight"):
        for key in keys:
            if key.endswith(anchor):
                return key[: -len(anchor)]
    return ""


def _packable_linear_weights(model: nn.Module, keep_in_fp32: list[str]) -> set[str]:
    """Names of the weights diffusers' ``_replace_with_gguf_linear`` will swap for ``GGUFLinear`` (and
    only those may arrive packed): weights of ``nn.Linear`` modules outside any
    ``nn.MultiheadAttention`` (which reads its projections directly) and outside the modules kept in
    float32."""
    inside_mha = {
        f"{prefix}.{child}" if prefix else child
        for prefix, module in model.named_modules()
        if isinstance(module, nn.MultiheadAttention)
        for child, _ in module.named_modules()
    }
    names = set()
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or any(name == m or name.startswith(m + ".") for m in inside_mha):
            continue
        if any(part in keep_in_fp32 for part in name.split(".")):
            continue
        names.add(f"{name}.weight")
    return names


def load_gguf_file(
    cls,
    path: str | os.PathLike,
    quantization_config=None,
    torch_dtype: torch.dtype | None = None,
    config: dict | str | os.PathLike | None = None,
    device: str | torch.device | None = None,
):
    """Load a community-layout GGUF file into ``cls`` with diffusers' GGUF quantizer.

    ``quantization_config``: a ``diffusers.GGUFQuantizationConfig`` (default: compute in
    ``torch_dtype`` or bfloat16). The packed linear weights are dequantized to its ``compute_dtype``
    at every forward; the other tensors load in ``torch_dtype`` (default: the compute dtype), the
    ``_keep_in_fp32_modules`` in float32. ``config`` (a dict or config.json, either naming)
    overrides the config stored in the file or inferred from its shapes. ``device``: where the
    weights go (default CPU, where they stay memory-mapped until used).
    """
    from diffusers import GGUFQuantizationConfig
    from diffusers.models.model_loading_utils import load_model_dict_into_meta
    from diffusers.quantizers import DiffusersAutoQuantizer
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES, GGUFParameter

    if isinstance(torch_dtype, str):
        torch_dtype = getattr(torch, torch_dtype.removeprefix("torch."))
    if quantization_config is None:
        quantization_config = GGUFQuantizationConfig(compute_dtype=torch_dtype or torch.bfloat16)
    if not isinstance(quantization_config, GGUFQuantizationConfig):
        raise TypeError(f"A .gguf file takes a GGUFQuantizationConfig, got {type(quantization_config).__name__}.")
    compute_dtype = quantization_config.compute_dtype
    torch_dtype = torch_dtype or compute_dtype
    if torch_dtype != compute_dtype:
        raise SteadyDancerCheckpointError(
            f"torch_dtype={torch_dtype} differs from the GGUF compute_dtype={compute_dtype}: the model's activations "
            "flow through both, so give the same dtype (e.g. torch.bfloat16) to both."
        )
    device = torch.device(device or "cpu")

    # 1. Read the file, check the architecture, map the names.
    file = read_gguf_file(path)
    _check_architecture(file)
    prefix = _tensor_prefix(file.tensors)
    naming = detect_naming({k: None for k in file.tensors}, prefix)
    to_model_name = convert_official_key if naming == "official" else (lambda key: key)

    def rename(key: str) -> str | None:
        return to_model_name(key[len(prefix):]) if key.startswith(prefix) else None

    official_shapes = {}
    for key, (_, _, shape) in file.tensors.items():
        if key.startswith(prefix):
            stripped = key[len(prefix):]
            official = stripped if naming == "official" else convert_to_official_key(stripped)
            if official is not None:
                official_shapes[official] = shape
    if not any(key.startswith(("condition_embedding_", "patch_embedding_fuse.")) for key in official_shapes):
        raise SteadyDancerCheckpointError(f"{file.path.name}: " + describe_wrong_checkpoint(list(file.tensors)))
    _check_five_d(file, official_shapes)
    unsupported = sorted({t.name for _, t, _ in file.tensors.values()
                          if not _is_unquantized(t) and t not in SUPPORTED_GGUF_QUANT_TYPES})
    if unsupported:
        raise SteadyDancerCheckpointError(
            f"{file.path.name} uses GGUF types diffusers cannot dequantize: {unsupported}. Supported: "
            + ", ".join(sorted(t.name for t in SUPPORTED_GGUF_QUANT_TYPES)) + "."
        )

    # 2. Config (argument > the file's own > inferred from the shapes), empty model, full plan check.
    if config is not None:
        model_config = to_model_config(read_config(config))
    elif file.config() is not None:
        model_config = to_model_config(file.config())
    else:
        model_config = official_config_to_diffusers(infer_official_config(official_shapes))
    if naming == "official" and "img_emb.proj.0.weight" in official_shapes:
        # As for the official folder: the official class hard-codes the CLIP width (1280); the weights tell it.
        model_config["image_dim"] = official_shapes["img_emb.proj.0.weight"][0]
    model = build_empty_model(cls, model_config)
    headers = {key: (file.path, shape, None) for key, (_, _, shape) in file.tensors.items()}
    plan = plan_sources(headers, rename, model.state_dict(), file.path.name)

    # 3. The state dict: packed GGUFParameters for GGUFLinear weights, plain tensors for the rest.
    keep_in_fp32 = list(cls._keep_in_fp32_modules or [])
    packable = _packable_linear_weights(model, keep_in_fp32)
    state_dict: dict[str, torch.Tensor] = {}
    for name, source in plan.items():
        data, quant_type, shape = file.tensors[source.key]
        if _is_unquantized(quant_type):
            state_dict[name] = torch.from_numpy(data).reshape(shape)
        elif name in packable and len(shape) == 2 and source.key not in file.reshaped:
            state_dict[name] = GGUFParameter(torch.from_numpy(data), quant_type=quant_type)
        else:
            state_dict[name] = _dequantize_exact(data, quant_type, shape)

    # 4. diffusers: swap the Linear layers, place every tensor (dtype rules, shape checks of packed data).
    hf_quantizer = DiffusersAutoQuantizer.from_config(quantization_config)
    hf_quantizer.validate_environment()
    hf_quantizer.preprocess_model(model=model, device_map=None, state_dict=state_dict,
                                  keep_in_fp32_modules=keep_in_fp32)
    load_model_dict_into_meta(
        model,
        state_dict,
        dtype=torch_dtype,
        device_map={"": device},
        hf_quantizer=hf_quantizer,
        keep_in_fp32_modules=keep_in_fp32,
        unexpected_keys=[],
    )
    hf_quantizer.postprocess_model(model)
    model.hf_quantizer = hf_quantizer

    # 5. Non-persistent buffers (the RoPE table) follow the device.
    for module in model.modules():
        for buffer_name, buffer in module._buffers.items():
            if buffer is not None and buffer.device != device:
                module._buffers[buffer_name] = buffer.to(device)
    still_meta = [name for name, param in model.named_parameters() if param.is_meta]
    if still_meta:
        raise RuntimeError(f"Parameters left on the meta device: {still_meta[:20]}")
    model.register_to_config(_name_or_path=str(file.path), _pre_quantization_dtype=torch_dtype)
    model.eval()
    return model
