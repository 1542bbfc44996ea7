"""`hf_covid.data.load_image`: formats, bit depths, colour modes, EXIF, DICOM and bad files."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from chest_trees import write_dicom
from PIL import Image

from hf_covid.data import ImageReadError, load_image


def _png_bytes(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def test_load_image_reads_8bit_png_as_unit_range_float(tmp_path):
    pixels = np.array([[0, 128], [255, 64]], dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (2, 2)
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-6)


def test_load_image_keeps_full_range_of_16bit_png(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    image = load_image(tmp_path / "ramp16.png")
    assert image.min() == 0.0 and image.max() == 1.0
    # Rescaled by bit depth: far more than 256 levels survive, and mid-grey stays mid-grey.
    assert len(np.unique(image)) > 1000
    np.testing.assert_allclose(image, ramp / 65535.0, atol=1e-6)
    # PIL's own 8-bit conversion clips: most of this ramp becomes white.
    clipped = np.asarray(Image.open(tmp_path / "ramp16.png").convert("L"))
    assert (clipped == 255).mean() > 0.9


def test_load_image_reads_16bit_tiff_and_bmp(tmp_path):
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "a.tif")
    Image.fromarray(np.full((4, 4), 51, dtype=np.uint8)).save(tmp_path / "a.bmp")
    np.testing.assert_allclose(load_image(tmp_path / "a.tif"), 32768 / 65535, atol=1e-6)
    np.testing.assert_allclose(load_image(tmp_path / "a.bmp"), 0.2, atol=1e-6)


def test_load_image_converts_rgba_palette_and_la_to_luminance():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 10))  # alpha ignored
    expected = 0.299  # ITU-R 601 luminance of pure red
    assert load_image(_png_bytes(rgba)) == pytest.approx(np.full((4, 4), expected), abs=0.01)
    palette = rgba.convert("RGB").convert("P")
    assert load_image(_png_bytes(palette)) == pytest.approx(np.full((4, 4), expected), abs=0.01)
    la = Image.new("LA", (4, 4), (200, 0))
    np.testing.assert_allclose(load_image(_png_bytes(la)), 200 / 255, atol=1e-6)


def test_load_image_converts_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (16, 16), (0, 0, 0, 0)).save(tmp_path / "white.jpg")
    Image.new("CMYK", (16, 16), (0, 0, 0, 255)).save(tmp_path / "black.jpg")
    assert Image.open(tmp_path / "white.jpg").mode == "CMYK"
    assert load_image(tmp_path / "white.jpg").mean() > 0.95
    assert load_image(tmp_path / "black.jpg").mean() < 0.05


def test_load_image_applies_exif_orientation():
    pixels = np.zeros((10, 20), dtype=np.uint8)
    pixels[:, :5] = 255  # bright left edge
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    data = _png_bytes(image, exif=exif.tobytes())
    loaded = load_image(data)
    assert loaded.shape == (20, 10)
    assert loaded[:5].mean() > 0.9  # the bright edge is now on top


def test_load_image_rejects_truncated_png(tmp_path):
    data = _png_bytes(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    )
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png.*truncated"):
        load_image(tmp_path / "cut.png")


def test_load_image_rejects_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png.*empty file \(0 bytes\)"):
        load_image(tmp_path / "empty.png")


def test_load_image_rejects_text_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(ImageReadError, match=r"notes\.png.*not a recognised image"):
        load_image(tmp_path / "notes.png")


def test_load_image_guards_against_decompression_bombs(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png.*300x200 = 60,000 pixels.*max_pixels"):
        load_image(tmp_path / "big.png", max_pixels=10_000)
    assert load_image(tmp_path / "big.png", max_pixels=60_000).shape == (200, 300)


def test_image_read_error_survives_pickling_for_dataloader_workers(tmp_path):
    error = ImageReadError(str(tmp_path / "x.png"), "empty file (0 bytes)")
    restored = pickle.loads(pickle.dumps(error))
    assert str(restored) == str(error) and restored.reason == "empty file (0 bytes)"


def test_load_image_inverts_dicom_monochrome1(tmp_path):
    stored = np.array([[0, 4095], [2048, 1024]])
    path = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=12)
    image = load_image(path)
    # Full stored range (no window in the file), then inverted: 0 is white in MONOCHROME1.
    np.testing.assert_allclose(image, 1.0 - stored / 4095, atol=1e-6)


def test_load_image_windows_ct_hounsfield_units_to_lung_window(tmp_path):
    hounsfield = np.array([[-2000, -1350], [-600, 400]])
    stored = hounsfield + 2048
    path = write_dicom(tmp_path / "ct.dcm", stored, modality="CT", rescale=(1.0, -2048.0))
    image = load_image(path)
    assert image[0, 0] == 0.0 and image[0, 1] == pytest.approx(0.0, abs=1e-3)  # below window
    assert image[1, 0] == pytest.approx(0.5, abs=1e-3)  # window center -600 HU
    assert image[1, 1] == 1.0  # above -600 + 750 HU
    mediastinum = load_image(path, window="mediastinum")
    assert mediastinum[1, 0] == 0.0  # lung tissue is black in the mediastinal window


def test_load_image_applies_dicom_window_from_the_file(tmp_path):
    stored = np.array([[99, 150], [200, 1000]])
    path = write_dicom(tmp_path / "dx.dcm", stored, window=(150, 101), bits_stored=12)
    image = load_image(path)
    assert image[0, 0] == 0.0 and image[0, 1] == pytest.approx(0.5, abs=0.01)
    assert image[1, 0] == 1.0 and image[1, 1] == 1.0
    np.testing.assert_allclose(load_image(path, window="full"), stored / 4095, atol=1e-6)


def test_load_image_multiframe_dicom_needs_a_named_frame(tmp_path):
    frames = np.stack([np.zeros((4, 4)), np.full((4, 4), 4095)])
    path = write_dicom(tmp_path / "cine.dcm", frames, bits_stored=12)
    with pytest.raises(ImageReadError, match=r"cine\.dcm.*2 frames; pass frame="):
        load_image(path)
    assert load_image(path, frame=1).min() == 1.0
    assert load_image(path, frame=0).max() == 0.0
    with pytest.raises(ImageReadError, match="frame 5 requested but it has 2"):
        load_image(path, frame=5)


def test_load_image_reads_dicom_bytes_without_suffix(tmp_path):
    path = write_dicom(tmp_path / "plain.dcm", np.full((3, 3), 4095), bits_stored=12)
    assert load_image(path.read_bytes()).min() == 1.0
