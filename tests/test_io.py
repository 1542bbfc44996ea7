"""`hf_covid.data.load_image`: formats, bit depths, colour modes, EXIF, DICOM and bad files."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from chest_trees import sixteen_bit_png, write_dicom, write_jpeg_dicom
from PIL import Image

from hf_covid.data import ImageReadError, load_image
from hf_covid.data.image_reading import read_image_and_format
from hf_covid.data.validation import InputPolicy


def _blocks(values, side: int = 4) -> np.ndarray:
    """Each value of a small array as a ``side`` x ``side`` block: big enough for the policy."""
    return np.kron(np.asarray(values), np.ones((side, side), dtype=np.int64))


def _png_bytes(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def test_load_image_reads_8bit_png_as_unit_range_float(tmp_path):
    pixels = _blocks([[0, 128], [255, 64]]).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.dtype == np.float32 and image.shape == (8, 8)
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
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "a.tif")
    Image.fromarray(np.full((8, 8), 51, dtype=np.uint8)).save(tmp_path / "a.bmp")
    np.testing.assert_allclose(load_image(tmp_path / "a.tif"), 32768 / 65535, atol=1e-6)
    np.testing.assert_allclose(load_image(tmp_path / "a.bmp"), 0.2, atol=1e-6)


def test_load_image_converts_rgba_palette_and_la_to_luminance():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 10))  # alpha ignored
    expected = 0.299  # ITU-R 601 luminance of pure red
    assert load_image(_png_bytes(rgba)) == pytest.approx(np.full((8, 8), expected), abs=0.01)
    palette = rgba.convert("RGB").convert("P")
    assert load_image(_png_bytes(palette)) == pytest.approx(np.full((8, 8), expected), abs=0.01)
    la = Image.new("LA", (8, 8), (200, 0))
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
    stored = _blocks([[0, 4095], [2048, 1024]])
    path = write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=12)
    image = load_image(path)
    # Full stored range (no window in the file), then inverted: 0 is white in MONOCHROME1.
    np.testing.assert_allclose(image, 1.0 - stored / 4095, atol=1e-6)


def test_load_image_windows_ct_hounsfield_units_to_lung_window(tmp_path):
    hounsfield = _blocks([[-2000, -1350], [-600, 400]])
    stored = hounsfield + 2048
    path = write_dicom(tmp_path / "ct.dcm", stored, modality="CT", rescale=(1.0, -2048.0))
    image = load_image(path)[::4, ::4]
    assert image[0, 0] == 0.0 and image[0, 1] == pytest.approx(0.0, abs=1e-3)  # below window
    assert image[1, 0] == pytest.approx(0.5, abs=1e-3)  # window center -600 HU
    assert image[1, 1] == 1.0  # above -600 + 750 HU
    mediastinum = load_image(path, window="mediastinum")[::4, ::4]
    assert mediastinum[1, 0] == 0.0  # lung tissue is black in the mediastinal window


def test_load_image_applies_dicom_window_from_the_file(tmp_path):
    stored = _blocks([[99, 150], [200, 1000]])
    path = write_dicom(tmp_path / "dx.dcm", stored, window=(150, 101), bits_stored=12)
    image = load_image(path)[::4, ::4]
    assert image[0, 0] == 0.0 and image[0, 1] == pytest.approx(0.5, abs=0.01)
    assert image[1, 0] == 1.0 and image[1, 1] == 1.0
    np.testing.assert_allclose(load_image(path, window="full"), stored / 4095, atol=1e-6)


def test_load_image_multiframe_dicom_needs_a_named_frame(tmp_path):
    frames = np.stack([np.zeros((8, 8)), np.full((8, 8), 4095)])
    path = write_dicom(tmp_path / "cine.dcm", frames, bits_stored=12)
    with pytest.raises(ImageReadError, match=r"cine\.dcm.*2 frames; pass frame="):
        load_image(path)
    assert load_image(path, frame=1).min() == 1.0
    assert load_image(path, frame=0).max() == 0.0
    with pytest.raises(ImageReadError, match="frame 5 requested but it has 2"):
        load_image(path, frame=5)


def test_load_image_reads_dicom_bytes_without_suffix(tmp_path):
    path = write_dicom(tmp_path / "plain.dcm", np.full((8, 8), 4095), bits_stored=12)
    assert load_image(path.read_bytes()).min() == 1.0


def test_read_image_and_format_names_the_decoder_that_read_the_file(tmp_path):
    dicom = write_dicom(tmp_path / "plain.dcm", np.full((8, 8), 4095), bits_stored=12)
    Image.fromarray(np.full((8, 8), 51, dtype=np.uint8)).save(tmp_path / "a.jpg")
    assert read_image_and_format(dicom.read_bytes())[1] == "DICOM"
    image, image_format = read_image_and_format(tmp_path / "a.jpg")
    assert image_format == "JPEG" and image.shape == (8, 8)


def test_dicom_errors_name_the_file_or_the_byte_count(tmp_path):
    (tmp_path / "empty_pixels.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    with pytest.raises(ImageReadError, match=r"empty_pixels\.dcm': DICOM"):
        load_image(tmp_path / "empty_pixels.dcm")
    with pytest.raises(ImageReadError, match=r"'<148 bytes>': DICOM"):
        load_image((tmp_path / "empty_pixels.dcm").read_bytes())


@pytest.mark.parametrize("channels", [3, 4])
def test_load_image_reads_16bit_colour_png_at_full_precision(channels):
    samples = np.random.default_rng(channels).integers(0, 65536, (24, 20, channels), np.uint16)
    data = sixteen_bit_png(samples)
    assert Image.open(io.BytesIO(data)).mode in ("RGB", "RGBA")  # Pillow alone keeps 8 bits

    image = load_image(data)

    expected = samples[..., :3] @ np.array([0.299, 0.587, 0.114]) / 65535
    # 16-bit luminance, rounded once: far below the 1/257 of an 8-bit read.
    np.testing.assert_allclose(image, expected, atol=1 / 65535)


def test_load_image_reads_16bit_grey_with_alpha_png_at_full_precision():
    samples = np.random.default_rng(2).integers(0, 65536, (16, 12, 2), np.uint16)
    np.testing.assert_allclose(
        load_image(sixteen_bit_png(samples)), samples[..., 0] / 65535, atol=1e-7
    )


def test_load_image_refuses_an_image_smaller_than_the_policy_minimum(tmp_path):
    Image.new("L", (1, 1), 128).save(tmp_path / "dot.png")
    with pytest.raises(ImageReadError, match=r"dot\.png.*1x1 pixels; need at least 8x8"):
        load_image(tmp_path / "dot.png")
    assert load_image(tmp_path / "dot.png", policy=InputPolicy(min_side=1)).shape == (1, 1)


def test_load_image_refuses_a_file_over_the_policy_size_before_reading_it(tmp_path):
    Image.new("L", (64, 64), 128).save(tmp_path / "large.png")
    small_files = InputPolicy(max_file_bytes=50)
    with pytest.raises(ImageReadError, match=r"large\.png.*bytes, more than max_file_bytes=50"):
        load_image(tmp_path / "large.png", policy=small_files)


def test_png_pixel_limit_is_checked_on_the_header_before_decoding():
    # The header claims 8000 x 8000; the data behind it is 9 x 9 pixels.
    bomb = sixteen_bit_png(np.zeros((9, 9), np.uint16), width=8000, height=8000)
    with pytest.raises(
        ImageReadError, match=r"8000x8000 = 64,000,000 pixels is more than max_pixels=36,000,000"
    ):
        load_image(bomb)


def test_dicom_pixel_limit_reads_the_jpeg_frame_header_not_the_dicom_header(tmp_path, monkeypatch):
    import pydicom.pixels

    path = write_jpeg_dicom(tmp_path / "liar.dcm", np.zeros((900, 800)), rows=100, columns=100)

    def must_not_decode(*args, **kwargs):
        raise AssertionError("the frame was decoded before its size was checked")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", must_not_decode)
    with pytest.raises(ImageReadError, match=r"liar\.dcm.*800x900 = 720,000 pixels is more than"):
        load_image(path, max_pixels=100_000)
    with pytest.raises(
        ImageReadError, match="header says 100x100 but the JPEG frame inside is 800x900"
    ):
        load_image(path)


def test_load_image_decodes_jpeg_baseline_dicom(tmp_path):
    frame = np.tile(np.linspace(0, 255, 32), (24, 1))
    path = write_jpeg_dicom(tmp_path / "cr.dcm", frame)
    image = load_image(path)
    assert image.shape == (24, 32)
    np.testing.assert_allclose(image, frame / 255, atol=0.03)  # lossy JPEG, full stored range
    inverted = write_jpeg_dicom(tmp_path / "cr1.dcm", frame, photometric="MONOCHROME1")
    np.testing.assert_allclose(load_image(inverted), 1 - image, atol=1e-6)


def test_dicom_without_pydicom_names_the_dicom_extra(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "plain.dcm", np.full((8, 8), 100), bits_stored=12)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now raises ImportError
    with pytest.raises(ImageReadError, match=r"plain\.dcm.*needs pydicom.*hf_covid\[dicom\]"):
        load_image(path)


def test_dicom_transfer_syntax_without_a_decoder_names_what_is_missing(tmp_path):
    import pydicom
    from pydicom.uid import HTJ2KLossless

    path = write_jpeg_dicom(tmp_path / "ht.dcm", np.zeros((16, 16)))
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = HTJ2KLossless
    dataset.save_as(path)
    with pytest.raises(ImageReadError, match=r"High-Throughput JPEG 2000.*cannot be decoded here"):
        load_image(path)


# -- A real DICOM (tests/fixtures/dicom/README.md) --------------------------------------------

REAL_CR = Path(__file__).parent / "fixtures" / "dicom" / "siim_cr_chest_pa.dcm"


def test_real_jpeg_baseline_cr_decodes_upright_and_not_inverted():
    import pydicom

    image = load_image(REAL_CR)
    stored = pydicom.dcmread(REAL_CR).pixel_array
    assert image.shape == (1024, 1024) and image.dtype == np.float32
    # No VOI window in the file: the full 8-bit stored range, value for value.
    np.testing.assert_allclose(image, stored / 255, atol=1e-6)
    lung_rows = image[350:650]
    mediastinum, lungs = lung_rows[:, 450:575].mean(), lung_rows[:, 200:400].mean()
    assert mediastinum > lungs + 0.2  # MONOCHROME2: bone and soft tissue bright, lungs dark
    assert image[-100:].mean() > image[:50].mean() + 0.2  # abdomen at the bottom: upright


def test_real_cr_marked_monochrome1_is_inverted(tmp_path):
    import pydicom

    dataset = pydicom.dcmread(REAL_CR)
    dataset.PhotometricInterpretation = "MONOCHROME1"  # as torchxrayvision's Fake_MONOHR1.dcm
    dataset.save_as(tmp_path / "monochrome1.dcm")
    np.testing.assert_allclose(
        load_image(tmp_path / "monochrome1.dcm"), 1.0 - load_image(REAL_CR), atol=1e-6
    )
