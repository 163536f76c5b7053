"""The official defaults on the real media pairs (integration: skipped without ../shared/media).

* ``auto`` alignment keeps the official result for both photos with the seated clip (before it
  switched to robust because the torso cannot be measured; that is not a failure by itself);
* the official conditioning chain shifts limb pixels and lowers their saturation as measured by
  ``benchmarks/conditioning.py`` (~0.08 in [-1, 1], ~-12 %), and its canvas-stage saturation
  matches the official example frames (~0.90)."""

from __future__ import annotations

import numpy as np
import pytest

from steadydancer.pose.path import PoseOptions, clean_driving, extract_driving, prepare_reference

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seated(shared_media):
    options = PoseOptions(max_frames=33)
    return clean_driving(extract_driving(shared_media / "driving_seated_gestures.mp4", options), options).poses


@pytest.mark.parametrize("photo", ["ref_street.png", "ref_third.png"])
def test_auto_keeps_the_official_alignment_for_the_shared_pairs(shared_media, seated, photo):
    from steadydancer.pose.align import align_sequence

    reference = prepare_reference(shared_media / photo)
    _, info = align_sequence(seated, reference.pose, reference.size)
    assert info.mode == "official", info.notes
    assert "torso: not measurable (nan), set to 1" in info.notes


def test_official_chain_matches_the_official_frames_look(shared_media, seated):
    from PIL import Image

    from steadydancer.pose.align import align_sequence
    from steadydancer.pose.conditioning import h264_roundtrip, jpeg_roundtrip
    from steadydancer.pose.render import official_canvas_size, render_sequence

    def sat(frames):
        p = np.stack(frames).astype(np.float64)
        lit = p.max(axis=-1) >= 32
        mx, mn = p.max(axis=-1)[lit], p.min(axis=-1)[lit]
        return float(np.mean((mx - mn) / mx))

    reference = prepare_reference(shared_media / "ref_street.png")
    aligned, _ = align_sequence(seated[:9], reference.pose, reference.size)
    rendered = list(render_sequence(aligned, *official_canvas_size(*reference.size)))
    chained = [jpeg_roundtrip(f) for f in h264_roundtrip(rendered, 16)]
    official = [np.asarray(Image.open(p).convert("RGB"))
                for p in sorted((shared_media / "dwpose_style").glob("positive_*.jpg"))]
    assert sat(rendered) > 0.99  # the clean render: pure palette colours
    assert abs(sat(chained) - sat(official)) < 0.03  # the chain gives the official frames' look
