import numpy as np
import pytest
from PIL import Image

from imagegen_service.panorama import fit_2to1, make_panorama, seam_mad, wrap_crossfade


def smooth_scene(height: int = 256, width: int = 512, seed: int = 0) -> np.ndarray:
    """A smooth image whose left and right edges differ (no wrap), like most generated images."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    base = rng.uniform(0, 255, size=3)
    image = base + 120 * x * np.array([1.0, -0.6, 0.4]) + 60 * y + 20 * np.sin(9 * x + 3 * y)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_seam_mad_measures_first_against_last_column():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, -1] = 30
    assert seam_mad(rgb) == pytest.approx(30.0)
    rgb[:, 0] = 30
    assert seam_mad(rgb) == 0.0


def test_crossfade_joins_columns_that_were_neighbours():
    rgb = smooth_scene()
    band = 32
    out = wrap_crossfade(rgb, band)
    assert out.shape == (256, 512 - band, 3)
    # The middle is untouched; the wrap now runs from input column W-band-1 to (about) W-band.
    np.testing.assert_array_equal(out[:, band:], rgb[:, band : 512 - band])
    np.testing.assert_array_equal(out[:, -1], rgb[:, 512 - band - 1])
    assert np.abs(out[:, 0].astype(int) - rgb[:, 512 - band].astype(int)).max() <= 3
    # ... and the band ends on the left edge's own content, meeting column `band` smoothly.
    assert np.abs(out[:, band - 1].astype(int) - rgb[:, band - 1].astype(int)).max() <= 3


def test_crossfade_removes_the_seam_of_an_image_that_does_not_wrap():
    rgb = smooth_scene()
    before = seam_mad(rgb)
    after = seam_mad(wrap_crossfade(rgb, 32))
    assert before > 30
    assert after < 2


def test_crossfade_refuses_a_band_wider_than_half_the_image():
    with pytest.raises(ValueError):
        wrap_crossfade(smooth_scene(width=40), 20)


@pytest.mark.parametrize("fit", ["resize", "crop"])
def test_fit_makes_exactly_2_to_1_keeping_the_width(fit):
    rgb = smooth_scene(height=1024, width=1728)
    out = fit_2to1(rgb, fit)
    assert out.shape == (864, 1728, 3)


def test_crop_keeps_the_centre_rows():
    rgb = smooth_scene(height=300, width=400)
    out = fit_2to1(rgb, "crop")
    np.testing.assert_array_equal(out, rgb[50:250])


def test_fit_drops_a_column_of_an_odd_width_and_resizes_an_image_wider_than_2_to_1():
    assert fit_2to1(smooth_scene(height=100, width=201), "crop").shape == (100, 200, 3)
    assert fit_2to1(smooth_scene(height=80, width=300), "crop").shape == (150, 300, 3)


def test_make_panorama_with_a_requested_size():
    rgb = smooth_scene(height=512, width=896)
    out = make_panorama(rgb, band_px=32, fit="resize", output_size=(1024, 512))
    assert out.shape == (512, 1024, 3)
    assert seam_mad(out) < 3
    with pytest.raises(ValueError):
        make_panorama(rgb, band_px=32, fit="resize", output_size=(1000, 512))


def test_seam_of_a_real_photo_before_and_after(shared_images):
    # A real photo does not wrap: its left and right edges show different things.
    photo = np.asarray(Image.open(shared_images["outdoor_colosseum_sky"]).convert("RGB"))
    before = seam_mad(photo)
    panorama = make_panorama(photo, band_px=32, fit="resize")
    after = seam_mad(panorama)
    assert panorama.shape[1] == 2 * panorama.shape[0]
    assert before > 10
    # What remains is the difference between two neighbouring columns of the photo.
    assert after < before / 4
