"""The SteadyDancer transformer on diffusers, its pose modules and checkpoint loading.

Names are imported lazily (torch and diffusers load on first use).
"""

from .._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
