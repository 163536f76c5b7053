import pytest

from steadydancer.constants import (
    is_valid_frame_count, latent_frame_count, nearest_valid_frame_count, size_for_area,
)


@pytest.mark.parametrize("n,ok", [(1, True), (5, True), (81, True), (4, False), (80, False), (0, False)])
def test_valid_frame_counts(n, ok):
    assert is_valid_frame_count(n) is ok


def test_nearest_valid_frame_count():
    assert nearest_valid_frame_count(80) == 77
    assert nearest_valid_frame_count(80, round_up=True) == 81
    assert nearest_valid_frame_count(81) == 81
    assert nearest_valid_frame_count(0) == 1
    assert latent_frame_count(81) == 21 and latent_frame_count(1) == 1


def test_size_for_area_matches_the_official_rule():
    # ref_street.png (864x1184) -> the official canvas is twice this: 1312x1792.
    assert size_for_area(864, 1184) == (656, 896)
    assert size_for_area(1280, 720) == (1024, 576)
    w, h = size_for_area(720, 1280, 832 * 480)
    assert w % 16 == 0 and h % 16 == 0 and w * h <= 832 * 480
