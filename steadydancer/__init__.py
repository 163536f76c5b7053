"""SteadyDancer studio: animate a character photo with the motion of a dance video.

Public names are imported lazily so that the pose path (numpy + mediapipe) never pays for torch
and diffusers, and the model side never imports mediapipe.
"""

from importlib import import_module

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


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'steadydancer' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
