"""SteadyDancer studio: animate a character photo with the motion of a dance video.

Public names are imported lazily so that the pose path (numpy + mediapipe) never pays for torch
and diffusers, and the model side never imports mediapipe.
"""

from ._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "SteadyDancerPipeline": "steadydancer.pipeline",
    "SteadyDancerPipelineOutput": "steadydancer.pipeline",
    "SteadyDancerTransformer3DModel": "steadydancer.models.transformer_steadydancer",
    "PoseFrame": "steadydancer.pose.sequence",
    "PoseSequence": "steadydancer.pose.sequence",
    "SteadyDancerInputError": "steadydancer.errors",
    "MissingWeightsError": "steadydancer.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
