"""The app's configuration: where the weights come from, where files go, the runtime (ZeroGPU or not)
and the service limits. Built once (:meth:`AppConfig.from_env`, then the command line's
:meth:`AppConfig.with_args`) and passed to :class:`studio.handlers.Studio`; nothing patches module globals.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from steadydancer import settings
from steadydancer.settings import env_flag
from steadydancer.weights import OFFLINE_ENV, default_model, is_offline

#: Space variables (README "On a Hugging Face ZeroGPU Space").
PRESET_ENV = "STEADYDANCER_PRESET"
DEVICE_ENV = "STEADYDANCER_DEVICE"
DEVICES_ENV = "STEADYDANCER_DEVICES"
TMP_ENV = "STEADYDANCER_APP_TMP"
MAX_SESSIONS_ENV = "STEADYDANCER_MAX_SESSIONS"
SESSION_IDLE_ENV = "STEADYDANCER_SESSION_IDLE_SECONDS"
SESSION_SWEEP_ENV = "STEADYDANCER_SESSION_SWEEP_SECONDS"
#: The app's own folder under the temp folder ($STEADYDANCER_APP_TMP or the system's); the app serves
#: results from it, so it is never the temp folder itself.
APP_TMP_DIRNAME = "steadydancer-app"
ZERO_GPU_SIZE_ENV = "STEADYDANCER_ZEROGPU_SIZE"
ZERO_GPU_MAX_SECONDS_ENV = "STEADYDANCER_ZEROGPU_MAX_SECONDS"

#: Bounded queue: further requests are refused with "queue full" rather than waiting for hours.
QUEUE_MAX_SIZE = 20
#: Previews running at once (CPU); generations run one at a time per process.
PREVIEW_CONCURRENCY = 2
#: Uploaded clips are decoded when they arrive, for their first preview (studio.sessions.decode_on_arrival);
#: the frames not yet read, every session together, stay under this (81 frames of a 16:9 clip at the
#: detection size are 56 MB; past it, a preview decodes the rest itself).
DECODE_AHEAD_MAX_BYTES = 512 * 2**20
#: Session folders no live session owns and untouched for this long are removed by the sweep (left
#: by an earlier process; a live session's folder goes when the session closes).
SESSION_MAX_AGE_SECONDS = settings.SESSION_IDLE_SECONDS
#: On a machine without CUDA (and no explicit --device cpu), only models whose transformer weights
#: are smaller than this run on the CPU: a small test model yes, the 14B model (28 GB) never.
CPU_MAX_TRANSFORMER_BYTES = 2 * 1024**3
#: ZeroGPU: a "large" slice has 60 of an H200's 132 SMs; "xlarge" is a whole H200.
ZERO_GPU_SLICE_SHARE = {"large": 60 / 132, "xlarge": 1.0}
#: Resolution class -> (max area, default shift): the settings table's classes.
DEFAULT_RESOLUTIONS = {name: (area, settings.recommended_shift(1, area)) for name, area in settings.RESOLUTION_AREAS.items()}


def on_zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space (the `spaces` package reads SPACES_ZERO_GPU)."""
    try:
        from spaces.config import Config

        return bool(Config.zero_gpu)
    except Exception:  # an older `spaces` without the config module
        return env_flag("SPACES_ZERO_GPU")


def _session_limits_from_env() -> dict:
    """STEADYDANCER_MAX_SESSIONS / _SESSION_IDLE_SECONDS / _SESSION_SWEEP_SECONDS, when set."""
    out = {}
    for name, env, setting in (("max_sessions", MAX_SESSIONS_ENV, settings.MAX_SESSIONS_RANGE),
                               ("session_idle_seconds", SESSION_IDLE_ENV, settings.SESSION_IDLE_RANGE),
                               ("session_sweep_seconds", SESSION_SWEEP_ENV, settings.SESSION_SWEEP_RANGE)):
        value = os.environ.get(env)
        if value not in (None, ""):
            out[name] = setting.check(value)
    return out


def zero_gpu_size() -> Optional[str]:
    """The ZeroGPU slice asked for (``large``/None or ``xlarge``); read at import by the one
    ``@spaces.GPU`` decoration, which needs it then."""
    value = (os.environ.get(ZERO_GPU_SIZE_ENV) or "").strip().lower() or None
    if value not in (None, "large", "xlarge"):
        raise ValueError(f"{ZERO_GPU_SIZE_ENV} must be 'large' or 'xlarge', got {value!r}")
    return value


def parse_devices(text: str) -> tuple[str, ...]:
    """``--devices`` / ``STEADYDANCER_DEVICES``: ``all`` (every visible CUDA GPU), a comma list of
    devices (``cuda:0,cuda:1``) or of GPU numbers (``0,1``); empty: one device."""
    text = text.strip().lower()
    if not text:
        return ()
    if text == "all":
        import torch

        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"--devices all: no CUDA GPU is visible here ({DEVICES_ENV}).")
        return tuple(f"cuda:{i}" for i in range(count))
    devices = tuple(f"cuda:{item}" if item.isdigit() else item for item in (v.strip() for v in text.split(",")) if item)
    for device in devices:
        if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"--devices wants 'all' or a comma list like cuda:0,cuda:1 (or 0,1), got {device!r}.")
    return devices


@dataclass(frozen=True)
class AppConfig:
    """Everything the app's behaviour depends on (command line > environment > default)."""

    model: str  #: a folder or a Hub repo id (steadydancer.weights.default_model())
    encoders: Optional[str] = None  #: None: $STEADYDANCER_ENCODERS or the Wan2.1 diffusers repo
    offline: bool = False
    device: Optional[str] = None  #: None: cuda when available (always on ZeroGPU), else cpu
    #: Several GPUs: one pipeline per device, as many generations at once (behind the one queue).
    #: Empty: one pipeline on ``device``.
    devices: tuple[str, ...] = ()
    tmp_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / APP_TMP_DIRNAME)
    #: sessions kept at once, closed after this long unused, swept this often (settings' defaults)
    max_sessions: int = settings.MAX_SESSIONS
    session_idle_seconds: float = settings.SESSION_IDLE_SECONDS
    session_sweep_seconds: float = settings.SESSION_SWEEP_SECONDS
    zero_gpu: bool = False
    zero_gpu_size: Optional[str] = None
    zero_gpu_max_seconds: int = 300
    preset: str = settings.PRESET.default  #: the preset Generate starts with (the only one on ZeroGPU)
    resolutions: Mapping[str, tuple[int, float]] = field(default_factory=lambda: dict(DEFAULT_RESOLUTIONS))
    default_resolution: str = settings.RESOLUTION.default

    @classmethod
    def from_env(cls) -> "AppConfig":
        zero = on_zero_gpu()
        tmp = os.environ.get(TMP_ENV)
        preset = os.environ.get(PRESET_ENV) or ("fast" if zero else settings.PRESET.default)
        return cls(
            model=default_model(),
            offline=is_offline(None) or env_flag(OFFLINE_ENV),
            device=os.environ.get(DEVICE_ENV) or None,
            devices=parse_devices(os.environ.get(DEVICES_ENV) or ""),
            zero_gpu=zero,
            zero_gpu_size=zero_gpu_size(),
            zero_gpu_max_seconds=int(os.environ.get(ZERO_GPU_MAX_SECONDS_ENV, 300)),
            preset=settings.PRESET.check(preset),
            # On ZeroGPU the short calls fit 480p best; elsewhere the official 720p class.
            default_resolution="480p" if zero else settings.RESOLUTION.default,
            **({"tmp_root": Path(tmp) / APP_TMP_DIRNAME} if tmp else {}),
            **_session_limits_from_env(),
        )

    def replace(self, **changes) -> "AppConfig":
        return dataclasses.replace(self, **changes)

    def with_resolutions(self, extra: Mapping[str, tuple[int, float]]) -> "AppConfig":
        return self.replace(resolutions={**self.resolutions, **{str(k): (int(a), float(s)) for k, (a, s) in extra.items()}})

    @property
    def generation_slots(self) -> int:
        """Generations that may run at once: one per device of ``devices`` (one on ZeroGPU)."""
        return 1 if self.zero_gpu else max(1, len(self.devices))

    @property
    def gpu_throughput_scale(self) -> float:
        """Share of a full H200's throughput the GPU delivers (for the estimate)."""
        if not self.zero_gpu:
            return 1.0
        return ZERO_GPU_SLICE_SHARE[self.zero_gpu_size or "large"]
