"""Where the weights come from: local folders, Hub repos, offline mode (torch-free).

* :func:`resolve_weights` -- turn ``--model`` / ``--encoders`` (folders or repo ids) into local folders,
  downloading only the files needed (once, into the Hugging Face cache) unless offline;
* :func:`missing_weights_message` -- the exact instructions shown when something is missing;
* :func:`default_model` / :func:`default_encoders` -- ``$STEADYDANCER_MODEL`` / ``$STEADYDANCER_ENCODERS``
  or the official ids; :func:`is_offline` -- ``HF_HUB_OFFLINE`` / ``STEADYDANCER_OFFLINE``.

Nothing here imports torch, diffusers or transformers: the app asks "is the model there?" before the
first page without loading any of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import MissingWeightsError
from .settings import env_flag

#: Environment variables naming the weights (``--model`` / ``--encoders`` / ``--offline`` win).
MODEL_ENV = "STEADYDANCER_MODEL"
ENCODERS_ENV = "STEADYDANCER_ENCODERS"
OFFLINE_ENV = "STEADYDANCER_OFFLINE"

#: Where the weights come from by default (see :func:`resolve_weights`).
DEFAULT_MODEL_ID = "MCG-NJU/SteadyDancer-14B"
DEFAULT_ENCODERS_ID = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"
TRANSFORMER_PATTERNS = ("config.json", "diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.json")
ENCODER_COMPONENTS = ("vae", "text_encoder", "tokenizer", "image_encoder", "image_processor")
ENCODER_PATTERNS = (
    "vae/*.json",
    "vae/*.safetensors",
    "text_encoder/*.json",
    "text_encoder/*.safetensors",
    "tokenizer/*",
    "image_encoder/*.json",
    "image_encoder/*.safetensors",
    "image_processor/*",
)
DIFFUSERS_PATTERNS = ("model_index.json", "scheduler/*", "transformer/*.json", "transformer/*.safetensors") + ENCODER_PATTERNS

#: The encoders of the official checkpoint folder (the Wan2.1-I2V-14B config's file names), loaded
#: as-is by :mod:`steadydancer.models.official_encoders`. (``xlm-roberta-large/``, the CLIP text
#: tokenizer, is never used.)
OFFICIAL_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
OFFICIAL_T5_TOKENIZER = "google/umt5-xxl"
OFFICIAL_CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
OFFICIAL_VAE_FILE = "Wan2.1_VAE.pth"
OFFICIAL_ENCODER_FILES = (OFFICIAL_T5_FILE, OFFICIAL_T5_TOKENIZER, OFFICIAL_CLIP_FILE, OFFICIAL_VAE_FILE)



@dataclass
class WeightsLocation:
    """Local folders to load from: either ``pipeline_dir`` (diffusers format), or
    ``transformer_dir`` (official names or diffusers names) or ``transformer_file`` (a ``.gguf``
    file) + either ``official_encoders_dir`` (the
    official folder's own ``.pth`` encoders) or ``encoders_dir`` (Wan2.1-I2V diffusers folder with
    ``vae/ text_encoder/ tokenizer/ image_encoder/ [image_processor/]``)."""

    pipeline_dir: Path | None = None
    transformer_dir: Path | None = None
    encoders_dir: Path | None = None
    official_encoders_dir: Path | None = None
    #: A single GGUF transformer file (community layout), instead of ``transformer_dir``.
    transformer_file: Path | None = None

    @property
    def kind(self) -> str:
        """``diffusers`` (one pipeline folder), ``official`` (the complete official folder) or
        ``transformer+encoders`` (a transformer folder + a Wan2.1-I2V diffusers encoders folder)."""
        if self.pipeline_dir is not None:
            return "diffusers"
        return "official" if self.official_encoders_dir is not None else "transformer+encoders"


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else ``HF_HUB_OFFLINE`` / ``STEADYDANCER_OFFLINE`` (read with
    :func:`steadydancer.settings.env_flag`, like every flag of the project)."""
    if offline is not None:
        return bool(offline)
    return env_flag("HF_HUB_OFFLINE") or env_flag(OFFLINE_ENV)


def default_model() -> str:
    """``$STEADYDANCER_MODEL``, else the official repo id."""
    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL_ID


def default_encoders() -> str:
    """``$STEADYDANCER_ENCODERS``, else the diffusers-format Wan2.1-I2V repo id."""
    return os.environ.get(ENCODERS_ENV) or DEFAULT_ENCODERS_ID


def _has_transformer_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("diffusion_pytorch_model*.safetensors"))


def _has_encoders(folder: Path) -> bool:
    return all((folder / name).is_dir() for name in ("vae", "text_encoder", "tokenizer", "image_encoder"))


def missing_official_encoder_files(folder: str | os.PathLike) -> list[str]:
    """The official encoder files / folders absent from ``folder`` (empty: all there; folders end in /)."""
    folder = Path(folder)
    missing = []
    for name in OFFICIAL_ENCODER_FILES:
        path = folder / name
        if name == OFFICIAL_T5_TOKENIZER:
            if not (path.is_dir() and any(path.iterdir())):
                missing.append(name + "/")
        elif not path.is_file():
            missing.append(name)
    return missing


def missing_weights_message(model, encoders, reason: str, offline: bool) -> str:
    """The exact instructions shown when weights are missing."""
    lines = [
        f"SteadyDancer weights are missing: {reason}",
        "",
        "Get them once (the 14B SteadyDancer transformer and the Wan2.1 VAE / UMT5 / CLIP files, tens of GB):",
        # `hf` takes one pattern per --include (a bare second pattern would be read as a file name).
        f"  hf download {DEFAULT_MODEL_ID} --include 'config.json' --include 'diffusion_pytorch_model*'",
        f"  hf download {DEFAULT_ENCODERS_ID} "
        + " ".join(f"--include '{c}/*'" for c in ENCODER_COMPONENTS),
        "or point the model at local folders: --model / STEADYDANCER_MODEL = the complete official folder "
        f"(hf download {DEFAULT_MODEL_ID} --local-dir ./SteadyDancer-14B: transformer + T5/CLIP/VAE .pth + "
        "google/umt5-xxl/; nothing else is downloaded), a diffusers-format pipeline "
        "folder (model_index.json) or a SteadyDancer transformer folder (config.json + "
        "diffusion_pytorch_model*.safetensors) or a GGUF transformer file (x.gguf, or repo::x.gguf; the "
        "encoders then come from its folder or --encoders, which may be the official folder); "
        "--encoders / STEADYDANCER_ENCODERS = a Wan2.1-I2V "
        "diffusers folder with vae/, text_encoder/, tokenizer/, image_encoder/.",
    ]
    if offline:
        lines.append("Offline mode is on (HF_HUB_OFFLINE=1): unset it to allow the download, or download first.")
    lines.append(f"(asked for model={model!s}, encoders={encoders!s})")
    return "\n".join(lines)


def _download(repo_id: str, patterns: Sequence[str], *, offline: bool, cache_dir, revision, model, encoders) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=list(patterns),
                local_files_only=offline,
                cache_dir=cache_dir,
                revision=revision,
            )
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, FileNotFoundError) as error:
        where = "in the local Hugging Face cache" if offline else "on the Hugging Face Hub"
        raise MissingWeightsError(
            missing_weights_message(model, encoders, f"{repo_id} not found {where} ({type(error).__name__}).", offline)
        ) from error
    except (HfHubHTTPError, OSError) as error:
        raise MissingWeightsError(
            missing_weights_message(model, encoders, f"downloading {repo_id} failed: {error}", offline)
        ) from error


def resolve_weights(
    model: str | os.PathLike = DEFAULT_MODEL_ID,
    encoders: str | os.PathLike | None = DEFAULT_ENCODERS_ID,
    *,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
) -> WeightsLocation:
    r"""Find (downloading if allowed) the folders to load SteadyDancer from.

    ``model`` is a local folder or a Hub repo id holding either a diffusers-format pipeline
    (``model_index.json``) or a SteadyDancer transformer (``config.json`` +
    ``diffusion_pytorch_model*.safetensors``, at the root -- the official layout -- or under
    ``transformer/``). The encoders come from the same folder when it has diffusers-format
    ``vae/ text_encoder/ tokenizer/ image_encoder/`` subfolders or all the official encoder files
    (:data:`OFFICIAL_ENCODER_FILES`: T5 / CLIP / VAE ``.pth`` + ``google/umt5-xxl/``; nothing is
    downloaded; a local folder with only some of them is an error naming the missing ones), else
    from ``encoders`` (local folder or repo id of a Wan2.1-I2V diffusers pipeline). A Hub repo whose
    cached snapshot already holds the official encoder files uses them too. ``model`` may also be a
    GGUF transformer file (a local ``.gguf`` path, or ``repo::file.gguf`` fetched alone); its encoders
    come from its own folder (either kind) or from ``encoders``, which may then also be the official
    folder. From the Hub only the needed files are fetched
    (``allow_patterns``; never the Wan transformer or the ``.pth`` files); files already in the cache
    are not fetched again. ``offline`` defaults to ``HF_HUB_OFFLINE``.
    """
    offline = is_offline(offline)
    common = dict(offline=offline, cache_dir=cache_dir, revision=revision, model=model, encoders=encoders)

    # 0. A GGUF transformer file (local, or repo::file on the Hub): the encoders next to it, else `encoders`.
    if is_gguf_path(model):
        gguf_file = _resolve_gguf_file(**common)
        return WeightsLocation(transformer_file=gguf_file,
                               **_resolve_encoders(gguf_file.parent, True, official_encoders_arg=True, **common))

    # 1. The model folder (small files first when it is a repo: decide the layout before big downloads).
    model_path = Path(os.path.expanduser(str(model)))
    is_local = model_path.is_dir()
    if not is_local and (model_path.is_absolute() or str(model).startswith((".", "~")) or str(model).count("/") != 1):
        raise MissingWeightsError(missing_weights_message(model, encoders, f"no folder {model_path}.", offline))
    if is_local:
        root = model_path
    else:
        root = _download(str(model), ["model_index.json", "config.json", "transformer/config.json"], **common)

    if (root / "model_index.json").is_file():
        if not is_local:
            root = _download(str(model), DIFFUSERS_PATTERNS, **common)
        missing = [c for c in ("transformer", "vae", "text_encoder", "tokenizer", "image_encoder", "scheduler")
                   if not (root / c).is_dir()]
        if missing:
            raise MissingWeightsError(missing_weights_message(model, encoders, f"{root} lacks {', '.join(missing)}.",
                                                              offline))
        return WeightsLocation(pipeline_dir=root)

    # 2. A transformer (official layout at the root, or a transformer/ subfolder).
    if (root / "config.json").is_file():
        transformer_patterns, transformer_dir = TRANSFORMER_PATTERNS, root
    elif (root / "transformer" / "config.json").is_file():
        transformer_patterns = tuple(f"transformer/{p}" for p in TRANSFORMER_PATTERNS)
        transformer_dir = root / "transformer"
    else:
        raise MissingWeightsError(
            missing_weights_message(model, encoders, f"{root} holds neither model_index.json nor a transformer "
                                    "config.json.", offline)
        )
    if not is_local:
        root = _download(str(model), transformer_patterns, **common)
        transformer_dir = root if transformer_dir.name != "transformer" else root / "transformer"
    if not _has_transformer_weights(transformer_dir):
        raise MissingWeightsError(
            missing_weights_message(model, encoders, f"{transformer_dir} has no diffusion_pytorch_model*.safetensors.",
                                    offline)
        )

    # 3. The encoders: the folder's own (diffusers format, or the official .pth files), else `encoders`.
    return WeightsLocation(transformer_dir=transformer_dir, **_resolve_encoders(root, is_local, **common))


def is_gguf_path(model) -> bool:
    """True for a ``--model`` naming a GGUF file (``x.gguf`` or ``repo::x.gguf``)."""
    return str(model).lower().endswith(".gguf")


def _resolve_encoders(root: Path, is_local: bool, *, offline, cache_dir, revision, model, encoders,
                      official_encoders_arg: bool = False) -> dict[str, Path]:
    """``{"encoders_dir": ...}`` or ``{"official_encoders_dir": ...}``: ``root``'s own encoders, else
    ``encoders`` (a Wan2.1-I2V diffusers folder / repo; with ``official_encoders_arg`` also a local
    official folder holding the ``.pth`` encoders)."""
    common = dict(offline=offline, cache_dir=cache_dir, revision=revision, model=model, encoders=encoders)
    if _has_encoders(root):
        return {"encoders_dir": root}
    missing_official = missing_official_encoder_files(root)
    if not missing_official:
        return {"official_encoders_dir": root}
    if is_local and len(missing_official) < len(OFFICIAL_ENCODER_FILES):
        # Some official encoder files but not all: an interrupted download, not a transformer-only folder.
        includes = " ".join(f"--include '{name}*'" if name.endswith("/") else f"--include '{name}'"
                            for name in missing_official)
        raise MissingWeightsError(missing_weights_message(
            model, encoders, f"{root} holds part of the official encoders but lacks {', '.join(missing_official)}. "
            f"Download them: hf download {DEFAULT_MODEL_ID} {includes} --local-dir {root}", offline))
    if encoders is None:
        raise MissingWeightsError(missing_weights_message(model, encoders, f"{root} has no encoders and none were "
                                                          "given.", offline))
    encoders_path = Path(os.path.expanduser(str(encoders)))
    if official_encoders_arg and encoders_path.is_dir() and not _has_encoders(encoders_path) \
            and not missing_official_encoder_files(encoders_path):
        return {"official_encoders_dir": encoders_path}
    if encoders_path.is_dir():
        encoders_dir = encoders_path
    elif encoders_path.is_absolute() or str(encoders).startswith((".", "~")) or str(encoders).count("/") != 1:
        raise MissingWeightsError(missing_weights_message(model, encoders, f"no folder {encoders_path}.", offline))
    else:
        encoders_dir = _download(str(encoders), ENCODER_PATTERNS, **common)
    if not _has_encoders(encoders_dir):
        raise MissingWeightsError(
            missing_weights_message(model, encoders, f"{encoders_dir} lacks vae/, text_encoder/, tokenizer/ or "
                                    "image_encoder/.", offline)
        )
    return {"encoders_dir": encoders_dir}


def _resolve_gguf_file(*, model, offline, cache_dir, revision, encoders) -> Path:
    """A local ``.gguf`` path, or ``repo::file.gguf`` fetched once into the Hugging Face cache."""
    model = str(model)
    local = Path(os.path.expanduser(model))
    if local.is_file():
        return local
    if "::" not in model:
        raise MissingWeightsError(missing_weights_message(
            model, encoders, f"no file {local} (a Hub file is written repo::file.gguf).", offline))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    repo_id, filename = model.split("::", 1)
    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=offline, cache_dir=cache_dir,
                                    revision=revision))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError) as error:
        where = "in the local Hugging Face cache" if offline else "on the Hugging Face Hub"
        raise MissingWeightsError(missing_weights_message(
            model, encoders, f"{filename} of {repo_id} not found {where} ({type(error).__name__}). "
            f"Download it once: hf download {repo_id} {filename}", offline)) from error
