"""How many people a character photo shows, and which one the pose was taken from.

The pose detector (mediapipe Holistic) follows one person -- the most prominent -- and says nothing
about the others, so a photo of two people would be animated from one of them silently. Faces are
counted with mediapipe's full-range face detector (bundled in the wheel, nothing downloaded), and the
person whose face holds the detected nose is named by position ("on the left", "in the middle").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .sequence import PoseFrame

#: Faces below this detector score are not counted.
FACE_MIN_CONFIDENCE = 0.6
#: The photo is searched at most at this size (the detector works on 192 px anyway).
FACE_DETECT_MAX_SIDE = 1024


@dataclass(frozen=True)
class Face:
    """A face box, normalised to the image (x0, y0, x1, y1), and the detector's score."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def center_x(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    def contains(self, x: float, y: float, margin: float = 0.5) -> bool:
        x0, y0, x1, y1 = self.box
        w, h = x1 - x0, y1 - y0
        return x0 - margin * w <= x <= x1 + margin * w and y0 - margin * h <= y <= y1 + margin * h


def find_faces(image, min_confidence: float = FACE_MIN_CONFIDENCE) -> list[Face]:
    """Faces in an RGB image (PIL or uint8 H x W x 3), left to right."""
    from PIL import Image

    from .extract import import_mediapipe

    mp = import_mediapipe()

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    scale = min(1.0, FACE_DETECT_MAX_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence) as fd:
        result = fd.process(np.ascontiguousarray(np.asarray(img.convert("RGB"))))
    faces = []
    for det in result.detections or []:
        b = det.location_data.relative_bounding_box
        faces.append(Face((b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height), float(det.score[0])))
    return sorted(faces, key=lambda f: f.center_x)


def _position(face: Face, faces: list[Face]) -> str:
    if len(faces) == 2:
        return "on the left" if face is faces[0] else "on the right"
    index = faces.index(face)
    if index == 0:
        return "on the far left"
    if index == len(faces) - 1:
        return "on the far right"
    return f"{index + 1}th from the left" if len(faces) > 3 else "in the middle"


def people_note(pose: PoseFrame, faces: list[Face]) -> Optional[str]:
    """None for a photo of one person; else a sentence saying how many people there are and which one
    the animation follows."""
    if len(faces) < 2:
        return None
    nose = pose.body[0, :2]
    chosen = None
    if np.isfinite(nose).all():
        chosen = next((f for f in faces if f.contains(float(nose[0]), float(nose[1]))), None)
    if chosen is None:  # no nose: the face nearest to the body's centre
        points = pose.body[:, :2][np.isfinite(pose.body[:, :2]).all(axis=1)]
        if len(points):
            cx = float(points[:, 0].mean())
            chosen = min(faces, key=lambda f: abs(f.center_x - cx))
    which = f"the person {_position(chosen, faces)}" if chosen is not None else "one of them"
    return (f"The photo shows {len(faces)} people; the animation follows {which} (the most prominent). "
            "For another one, crop the photo to that person.")
