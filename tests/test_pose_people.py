"""A photo of several people: counted, and the one the animation follows is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steadydancer.pose.people import Face, find_faces, people_note
from steadydancer.pose.sequence import PoseFrame

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(EXAMPLES / "astronaut.png").convert("RGB")


def _side_by_side(*images: Image.Image) -> Image.Image:
    w, h = images[0].size
    out = Image.new("RGB", (len(images) * (w + 40), h), (120, 120, 120))
    for i, img in enumerate(images):
        out.paste(img, (i * (w + 40), 0))
    return out


def test_one_person_needs_no_note(astronaut):
    from steadydancer.pose.extract import extract_image_pose

    faces = find_faces(astronaut)
    assert len(faces) == 1
    assert people_note(extract_image_pose(astronaut), faces) is None


def test_two_people_are_counted_and_the_animated_one_named(astronaut):
    from steadydancer.pose.extract import extract_image_pose

    photo = _side_by_side(astronaut, astronaut.transpose(Image.FLIP_LEFT_RIGHT))
    faces = find_faces(photo)
    assert len(faces) == 2 and faces[0].center_x < 0.5 < faces[1].center_x
    pose = extract_image_pose(photo)
    note = people_note(pose, faces)
    side = "left" if pose.body[0, 0] < 0.5 else "right"
    assert note.startswith("The photo shows 2 people") and f"the person on the {side}" in note


def test_the_note_follows_the_nose():
    body = np.full((18, 3), np.nan)
    body[0] = (0.8, 0.3, 1.0)  # nose on the right
    pose = PoseFrame(body=body, hands=np.full((2, 21, 4), np.nan), face=np.full((68, 3), np.nan))
    faces = [Face((0.1, 0.2, 0.2, 0.35), 0.9), Face((0.45, 0.2, 0.55, 0.35), 0.9), Face((0.75, 0.2, 0.85, 0.35), 0.9)]
    assert "the person on the far right" in people_note(pose, faces)
    body[0] = (0.5, 0.3, 1.0)
    assert "the person in the middle" in people_note(PoseFrame(body=body, hands=pose.hands, face=pose.face), faces)
