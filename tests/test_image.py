"""Character-image loading: every mode ends as upright 8-bit RGB, or a helpful error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from steadydancer.errors import SteadyDancerInputError
from steadydancer.image import ALPHA_BACKGROUND, fit_to_area, load_image


def rgb(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def test_plain_rgb_file_and_pil_and_array(tmp_path, astronaut_path):
    from_file = load_image(astronaut_path)
    assert from_file.size == (512, 512)
    np.testing.assert_array_equal(rgb(from_file), rgb(load_image(Image.open(astronaut_path))))
    np.testing.assert_array_equal(rgb(from_file), rgb(load_image(np.asarray(from_file))))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((80, 120, 3), np.uint8)
    pixels[:20, :20] = (255, 0, 0)  # red block top-left of the stored image
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)
    out = rgb(load_image(path))
    assert out.shape == (120, 80, 3)
    assert out[5, -5, 0] > 200 and out[5, -5, 1] < 60  # now top-right


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((80, 100, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[:, 50:, 3] = 255  # right half opaque red, left half transparent
    rgba[:, 40:50, 3] = 128  # a half-transparent band
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    out = rgb(load_image(tmp_path / "cut.png"))
    assert tuple(out[0, 0]) == ALPHA_BACKGROUND == (255, 255, 255)
    assert tuple(out[0, 99]) == (200, 0, 0)
    np.testing.assert_allclose(out[0, 45], [228, 127, 127], atol=2)  # 50 % red over white
    # LA and palette-with-transparency go the same way
    Image.fromarray(rgba).convert("LA").save(tmp_path / "la.png")
    assert tuple(rgb(load_image(tmp_path / "la.png"))[0, 0]) == (255, 255, 255)
    pal = Image.new("P", (80, 80), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "p.png", transparency=1)
    assert tuple(rgb(load_image(tmp_path / "p.png"))[0, 0]) == (255, 255, 255)
    pal.save(tmp_path / "p_opaque.png")
    assert tuple(rgb(load_image(tmp_path / "p_opaque.png"))[0, 0]) == (10, 200, 30)
    # a different background on request
    grey = rgb(load_image(tmp_path / "cut.png", background=(128, 128, 128)))
    assert tuple(grey[0, 0]) == (128, 128, 128)


def test_cmyk(tmp_path):
    Image.new("RGB", (80, 80), (200, 30, 10)).convert("CMYK").save(tmp_path / "print.jpg", quality=98)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    np.testing.assert_allclose(rgb(load_image(tmp_path / "print.jpg"))[40, 40], (200, 30, 10), atol=6)


def test_16bit_images_are_scaled_not_clipped(tmp_path):
    grey16 = np.linspace(0, 65535, 100 * 80).reshape(80, 100).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = rgb(load_image(tmp_path / "g16.png"))
    np.testing.assert_array_equal(out[..., 0], np.round(grey16 / 257))
    assert out.max() == 255 and out[40, 50, 0] not in (0, 255)  # scaled, not clipped to 255

    rgb48 = np.zeros((80, 100, 3), np.uint16)
    rgb48[..., 0], rgb48[..., 1], rgb48[..., 2] = 65535, 32767, 383  # 383/257 = 1.49 -> 1
    cv2.imwrite(str(tmp_path / "rgb48.png"), rgb48[..., ::-1])
    assert tuple(rgb(load_image(tmp_path / "rgb48.png"))[0, 0]) == (255, 127, 1)

    rgba64 = np.zeros((80, 100, 4), np.uint16)
    rgba64[..., 0] = 65535
    rgba64[:, 50:, 3] = 65535
    cv2.imwrite(str(tmp_path / "rgba64.png"), rgba64[..., [2, 1, 0, 3]])
    out = rgb(load_image(tmp_path / "rgba64.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 99]) == (255, 0, 0)

    arr16 = np.full((70, 70, 3), 65535, np.uint16)
    arr16[0, 0] = (257 * 10, 0, 32896)
    assert tuple(rgb(load_image(arr16))[0, 0]) == (10, 0, 128)


def test_greyscale_bilevel_and_float(tmp_path):
    Image.fromarray(np.full((70, 90), 77, np.uint8)).save(tmp_path / "l.png")
    assert tuple(rgb(load_image(tmp_path / "l.png"))[0, 0]) == (77, 77, 77)
    Image.fromarray(np.eye(70, dtype=bool)).save(tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").mode == "1"
    out = rgb(load_image(tmp_path / "one.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (0, 0, 0)
    Image.fromarray(np.full((70, 90), 0.5, np.float32), "F").save(tmp_path / "f.tif")
    assert tuple(rgb(load_image(tmp_path / "f.tif"))[0, 0]) == (128, 128, 128)
    assert tuple(rgb(load_image(np.full((70, 70, 3), 0.25, np.float64)))[0, 0]) == (64, 64, 64)
    assert tuple(rgb(load_image(np.ones((70, 70), bool)))[0, 0]) == (255, 255, 255)


def test_broken_icc_profile_is_ignored(tmp_path):
    img = Image.new("RGB", (70, 70), (10, 20, 30))
    img.save(tmp_path / "icc.png", icc_profile=b"definitely not a profile")
    assert tuple(rgb(load_image(tmp_path / "icc.png"))[0, 0]) == (10, 20, 30)


@pytest.mark.parametrize("content, why", [
    (b"just some text, not a picture\n", "not an image file"),
    (b"", "empty"),
])
def test_not_an_image(tmp_path, content, why):
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(SteadyDancerInputError, match=why) as err:
        load_image(path)
    assert "photo.png" in str(err.value) and "JPEG or PNG" in str(err.value)


def test_truncated_file(tmp_path, astronaut_path):
    data = astronaut_path.read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SteadyDancerInputError, match="damaged or incomplete"):
        load_image(tmp_path / "half.png")


def test_missing_file(tmp_path):
    with pytest.raises(SteadyDancerInputError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_too_small_and_extreme_aspect():
    with pytest.raises(SteadyDancerInputError, match=r"too small \(100x30\).*at least 64 px"):
        load_image(np.zeros((30, 100, 3), np.uint8))
    assert load_image(np.zeros((30, 100, 3), np.uint8), min_side=16).size == (100, 30)
    with pytest.raises(SteadyDancerInputError, match=r"5\.0:1.*Crop it"):
        load_image(np.zeros((100, 500, 3), np.uint8))
    assert load_image(np.zeros((100, 400, 3), np.uint8)).size == (400, 100)  # exactly 4:1 is fine
    with pytest.raises(SteadyDancerInputError, match="array"):
        load_image(np.zeros((70, 70, 2), np.uint8))


def test_fit_to_area_matches_official_size_and_resampler():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (1184, 864, 3), dtype=np.uint8))
    out = fit_to_area(photo)
    assert out.size == (656, 896)  # the official size for the 864x1184 demo image
    # shrinking by < 2x: exactly the official cv2.INTER_CUBIC
    expected = cv2.resize(np.asarray(photo), (656, 896), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(np.asarray(out), expected)
    # a big phone photo: INTER_AREA (no aliasing)
    big = Image.fromarray(rng.integers(0, 256, (3000, 2250, 3), dtype=np.uint8))
    out = fit_to_area(big)
    expected = cv2.resize(np.asarray(big), out.size, interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(np.asarray(out), expected)
    assert out.size[0] % 16 == 0 and out.size[1] % 16 == 0 and out.size[0] * out.size[1] <= 1024 * 576
    assert fit_to_area(photo, max_area=480 * 832).size == (528, 736)


@pytest.mark.integration
def test_real_reference_images(shared_media):
    for name, size in (("ref_street.png", (864, 1184)), ("ref_third.png", (768, 1344))):
        img = load_image(shared_media / name)
        assert img.mode == "RGB" and img.size == size
        # their alpha channel is fully opaque: pixels equal the RGB channels
        raw = np.asarray(Image.open(shared_media / name))
        np.testing.assert_array_equal(np.asarray(img), raw[..., :3])
