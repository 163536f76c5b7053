"""The SteadyDancer transformer on diffusers, its pose modules and checkpoint loading.

Names are imported lazily (torch and diffusers load on first use).
"""

from importlib import import_module

_EXPORTS = {
    "SteadyDancerTransformer3DModel": "steadydancer.models.transformer_steadydancer",
    "SteadyDancerAttnProcessor": "steadydancer.models.transformer_steadydancer",
    "capture_intermediates": "steadydancer.models.transformer_steadydancer",
    "SpatialStructureAdaptiveExtractor": "steadydancer.models.pose_modules",
    "temporal_motion_coherence": "steadydancer.models.pose_modules",
    "FramewiseAttentionAlignment": "steadydancer.models.pose_modules",
    "SteadyDancerCheckpointError": "steadydancer.models.loading",
    "save_official_checkpoint": "steadydancer.models.loading",
    "official_state_dict": "steadydancer.models.loading",
    "official_config_to_diffusers": "steadydancer.models.loading",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steadydancer.models' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
