"""Peak RAM while loading the official encoder ``.pth`` files (T5, CLIP, VAE) with the product's loader.

    python benchmarks/encoder_load_memory.py

Writes mid-size encoders in the official format (same key layout as the released files, narrower /
fewer layers; the T5 in bfloat16 and the CLIP in float16 as released, the VAE in float32) to a
temporary folder, then loads each in a fresh process two ways and samples that process's anonymous
memory (``RssAnon``: tensors in RAM) and file-backed resident pages (``RssFile``: the mmap, page
cache the kernel can drop) every 5 ms:

* ``product``: :mod:`steadydancer.models.official_encoders` (meta-device model, ``torch.load(mmap=True)``,
  one tensor at a time in the requested dtype);
* ``naive``: ``torch.load`` of the whole file, model built with real (random-initialised) weights,
  ``load_state_dict`` after converting the dict -- what a straightforward port does.

RAM = peak over the post-import baseline, with every weight read once after loading; the ratio is
to the loaded model's size in its dtype.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rss import LoadRecording  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from steadydancer.models import official_encoders as oe  # noqa: E402

#: Mid-size encoders (the released ones: T5 4096 wide x 24 layers, vocab 256384; CLIP ViT-H 1280 x 32; VAE base 96).
T5_MID = dict(vocab=32000, dim=1024, heads=16, ffn=2816, layers=6, buckets=32)
CLIP_MID = dict(width=1280, layers=4, heads=16, mlp=5120, text_dim=64)
VAE_MID = dict(base_dim=64)

CASES = (  # (component, file, load dtype)
    ("t5", oe.OFFICIAL_T5_FILE, "bfloat16"),
    ("t5", oe.OFFICIAL_T5_FILE, "float32"),
    ("clip", oe.OFFICIAL_CLIP_FILE, "float32"),
    ("vae", oe.OFFICIAL_VAE_FILE, "float32"),
)


def write_t5(path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    c = T5_MID
    r = lambda *shape: (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)  # noqa: E731
    state = {"token_embedding.weight": r(c["vocab"], c["dim"]), "norm.weight": r(c["dim"])}
    for n in range(c["layers"]):
        p = f"blocks.{n}."
        state.update({p + "norm1.weight": r(c["dim"]), p + "norm2.weight": r(c["dim"]),
                      p + "pos_embedding.embedding.weight": r(c["buckets"], c["heads"]),
                      p + "ffn.gate.0.weight": r(c["ffn"], c["dim"]), p + "ffn.fc1.weight": r(c["ffn"], c["dim"]),
                      p + "ffn.fc2.weight": r(c["dim"], c["ffn"])})
        state.update({p + f"attn.{k}.weight": r(c["dim"], c["dim"]) for k in "qkvo"})
    torch.save(state, path)


def write_clip(path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    c = CLIP_MID
    w = c["width"]
    r = lambda *shape: (torch.randn(*shape, generator=g) * 0.02).to(torch.float16)  # noqa: E731
    state = {"log_scale": r(()), "visual.cls_embedding": r(1, 1, w), "visual.pos_embedding": r(1, 257, w),
             "visual.head": r(w, 1024), "visual.patch_embedding.weight": r(w, 3, 14, 14)}
    for norm in ("pre_norm", "post_norm"):
        state.update({f"visual.{norm}.weight": r(w), f"visual.{norm}.bias": r(w)})
    for n in range(c["layers"]):
        p = f"visual.transformer.{n}."
        state.update({p + "attn.to_qkv.weight": r(3 * w, w), p + "attn.to_qkv.bias": r(3 * w),
                      p + "attn.proj.weight": r(w, w), p + "attn.proj.bias": r(w),
                      p + "mlp.0.weight": r(c["mlp"], w), p + "mlp.0.bias": r(c["mlp"]),
                      p + "mlp.2.weight": r(w, c["mlp"]), p + "mlp.2.bias": r(w)})
        state.update({p + f"norm{i}.{leaf}": r(w) for i in (1, 2) for leaf in ("weight", "bias")})
    state["textual.token_embedding.weight"] = r(10, c["text_dim"])  # the text tower, skipped by the loader
    torch.save(state, path)


def write_vae(path: Path) -> None:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(2)
    model = AutoencoderKLWan(base_dim=VAE_MID["base_dim"])
    # Official names: invert diffusers' renaming over the model's own keys.
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    probe = {}
    state = model.state_dict()
    # Every official name the converter maps onto a model key (the converter is a renaming).
    candidates = _official_vae_names(len(model.config.dim_mult), model.config.num_res_blocks)
    renamed = convert_wan_vae_to_diffusers({k: k for k in candidates})
    for new, old in renamed.items():
        if new in state:
            probe[old] = state[new].contiguous()
    missing = set(state) - set(convert_wan_vae_to_diffusers({k: k for k in probe}))
    assert not missing, sorted(missing)[:5]
    torch.save(probe, path)


def _official_vae_names(levels: int, res_blocks: int) -> list[str]:
    names = []
    leaves = ("residual.0.gamma", "residual.2.weight", "residual.2.bias", "residual.3.gamma", "residual.6.weight",
              "residual.6.bias", "shortcut.weight", "shortcut.bias", "resample.1.weight", "resample.1.bias",
              "time_conv.weight", "time_conv.bias")
    for side in ("encoder.downsamples", "decoder.upsamples"):
        for i in range(levels * (res_blocks + 2)):
            names += [f"{side}.{i}.{leaf}" for leaf in leaves]
    for side in ("encoder", "decoder"):
        names += [f"{side}.conv1.weight", f"{side}.conv1.bias", f"{side}.head.0.gamma", f"{side}.head.2.weight",
                  f"{side}.head.2.bias"]
        for m in (0, 2):
            names += [f"{side}.middle.{m}.{leaf}" for leaf in leaves[:6]]
        names += [f"{side}.middle.1.{leaf}" for leaf in ("norm.gamma", "to_qkv.weight", "to_qkv.bias",
                                                         "proj.weight", "proj.bias")]
    names += ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    return names


# ------------------------------------------------------------------------------------------ child
def _naive(component: str, path: Path, dtype: torch.dtype):
    state = torch.load(path, map_location="cpu", weights_only=True)
    if component == "t5":
        from transformers import UMT5EncoderModel

        config = oe.t5_config(state)
        model = UMT5EncoderModel(config).to(dtype)
        table = oe.t5_key_table(config.num_layers)
    elif component == "clip":
        from transformers import CLIPVisionModel

        config = oe.clip_vision_config(state)
        model = CLIPVisionModel(config).to(dtype)
        table = oe.clip_key_table(config.num_hidden_layers, config.hidden_size)
    else:
        from diffusers import AutoencoderKLWan

        model = AutoencoderKLWan(**oe.vae_config(state)).to(dtype)
        table = oe.vae_key_table(state.keys())
    converted = {}
    for name, source in table.items():
        tensor = state[source.key]
        if source.rows is not None:
            tensor = tensor[source.rows[0] : source.rows[1]]
        converted[name] = tensor
    model.load_state_dict({k: v.reshape(model.state_dict()[k].shape) for k, v in converted.items()}, strict=False)
    return model


def _child(component: str, path: str, dtype_name: str, method: str) -> None:
    # Import every library first: the baseline must not count their import.
    from diffusers import AutoencoderKLWan  # noqa: F401
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers  # noqa: F401
    from transformers import CLIPVisionModel, UMT5EncoderModel  # noqa: F401

    dtype = getattr(torch, dtype_name)
    recording = LoadRecording()
    start = time.perf_counter()
    if method == "naive":
        model = _naive(component, Path(path), dtype)
    elif component == "t5":
        model = oe.load_official_text_encoder(path, dtype)
    elif component == "clip":
        model = oe.load_official_image_encoder(path, dtype)
    else:
        model = oe.load_official_vae(path, dtype)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        checksum = sum(float(p.sum()) for p in model.parameters())  # reads every page, no float copy
    recording.report(model, seconds, checksum)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _child(*sys.argv[2:])
        return
    print(f"mid-size official encoders: T5 {T5_MID}, CLIP {CLIP_MID}, VAE {VAE_MID}")
    print("RAM = peak anonymous memory over the post-import baseline (tensors), every weight read once;")
    print("file pages = peak file-backed resident memory (the mmap; page cache the kernel can drop).")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_t5(folder / oe.OFFICIAL_T5_FILE)
        write_clip(folder / oe.OFFICIAL_CLIP_FILE)
        write_vae(folder / oe.OFFICIAL_VAE_FILE)
        for component, name, dtype in CASES:
            path = folder / name
            row = []
            for method in ("product", "naive"):
                result = subprocess.run([sys.executable, __file__, "--_child", component, str(path), dtype, method],
                                        capture_output=True, text=True, check=True)
                data = json.loads(result.stdout.strip().splitlines()[-1])
                anon = data["peaks"]["RssAnon"] - data["baseline"]["RssAnon"]
                row.append((method, anon, data["model_bytes"], data["peaks"].get("RssFile", 0), data["seconds"]))
            print(f"{component:>4} file {mib(path.stat().st_size):>9} -> {dtype:>8}: " + "; ".join(
                f"{method} RAM {mib(anon)} ({anon / size:.2f} x model {mib(size)}), file pages {mib(file_pages)}, "
                f"{seconds:.1f} s" for method, anon, size, file_pages, seconds in row))


if __name__ == "__main__":
    main()
