"""Fuzzing the image readers: every damaged file is decoded or refused with the project's error.

Real-looking files (8- and 16-bit grey and RGB PNG, JPEG, an uncompressed DICOM and the real CR
DICOM fixture) are damaged the ways files get damaged or forged: truncated, bits flipped, header
bytes overwritten (sizes, bit depths, tags), runs zeroed, pieces repeated, one format's header on
another's body. `load_image` must return a finite 2-D float32 image in [0, 1] or raise
`ImageReadError` naming the file; read as the app reads an upload (its bytes, under the input's
name) it must name the input instead, never a file. No other exception, no input over
`SECONDS_PER_INPUT`, and the process's peak memory may grow by at most `MAX_MEMORY_GROWTH_MB`.

The default number of inputs keeps CI short; ``HF_COVID_FUZZ_CASES=20000`` runs a longer fuzz
by hand. ``-s`` prints the counts (decoded, rejected by reason).
"""

from __future__ import annotations

import io
import os
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from chest_trees import random_image, sixteen_bit_png, write_dicom
from PIL import Image

from hf_covid.data import ImageReadError, load_image

FIXTURE_DICOM = Path(__file__).parent / "fixtures" / "dicom" / "siim_cr_chest_pa.dcm"
FUZZ_CASES = int(os.environ.get("HF_COVID_FUZZ_CASES", "1200"))
"""Damaged inputs per reading path (a file by path, an upload's bytes under a name)."""
SECONDS_PER_INPUT = 5.0
MAX_MEMORY_GROWTH_MB = 400

# pydicom warns about every damaged value it still parses; here that is the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _seed_files(folder: Path) -> dict[str, bytes]:
    """Undamaged files of every kind the readers take: name (with its suffix) -> bytes."""
    rng = np.random.default_rng(0)
    grey = random_image(rng, 48)
    rgb = np.stack([grey, random_image(rng, 48), grey[::-1]], axis=-1)
    grey16 = grey.astype(np.uint16) * 257 + rng.integers(0, 257, grey.shape, dtype=np.uint16)
    rgb16 = np.stack([grey16, grey16[::-1], grey16[:, ::-1]], axis=-1)
    dicom = write_dicom(folder / "seed.dcm", (grey16 >> 4).astype(np.uint16), bits_stored=12)
    return {
        "grey8.png": _png(grey),
        "rgb8.png": _png(rgb),
        "grey16.png": sixteen_bit_png(grey16),
        "rgb16.png": sixteen_bit_png(rgb16),
        "grey.jpg": _jpeg(grey),
        "rgb.jpg": _jpeg(rgb),
        "uncompressed.dcm": Path(dicom).read_bytes(),
        "cr_jpeg_baseline.dcm": FIXTURE_DICOM.read_bytes(),
    }


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _flip_bits(data: bytes, rng: np.random.Generator) -> bytes:
    damaged = bytearray(data)
    for position in rng.integers(0, len(data), int(rng.integers(1, 9))):
        damaged[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(damaged)


def _edit_header(data: bytes, rng: np.random.Generator) -> bytes:
    """Overwrite a few bytes where sizes, depths and tags live with extreme or random values."""
    damaged = bytearray(data)
    extremes = (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x01")
    for _ in range(int(rng.integers(1, 4))):
        position = int(rng.integers(0, min(len(data), 1024)))
        value = (
            extremes[int(rng.integers(0, len(extremes)))]
            if rng.random() < 0.5
            else rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8).tobytes()
        )
        damaged[position : position + len(value)] = value
    return bytes(damaged[: len(data)])


def _zero_run(data: bytes, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(0, len(data)))
    length = int(rng.integers(1, max(2, len(data) // 4)))
    return data[:start] + bytes(min(length, len(data) - start)) + data[start + length :]


def _repeat_piece(data: bytes, rng: np.random.Generator) -> bytes:
    start = int(rng.integers(0, len(data)))
    piece = data[start : start + int(rng.integers(1, 4096))]
    insert_at = int(rng.integers(0, len(data)))
    return data[:insert_at] + piece * int(rng.integers(1, 4)) + data[insert_at:]


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "truncate": _truncate,
    "flip_bits": _flip_bits,
    "edit_header": _edit_header,
    "zero_run": _zero_run,
    "repeat_piece": _repeat_piece,
}


def _damaged_inputs(
    seeds: dict[str, bytes], count: int, seed: int
) -> Iterator[tuple[str, str, bytes]]:
    """``count`` damaged inputs: (seed file name, mutation, bytes), deterministic from ``seed``.
    One in ten splices one file's first bytes onto another's rest."""
    rng = np.random.default_rng(seed)
    names, mutations = sorted(seeds), sorted(MUTATIONS)
    for _ in range(count):
        name = names[int(rng.integers(0, len(names)))]
        data = seeds[name]
        if rng.random() < 0.1:
            other = seeds[names[int(rng.integers(0, len(names)))]]
            cut = int(rng.integers(1, min(len(data), len(other))))
            yield name, "splice", other[:cut] + data[cut:]
            continue
        mutation = mutations[int(rng.integers(0, len(mutations)))]
        damaged = data
        for _ in range(int(rng.integers(1, 3))):  # one or two damages
            damaged = MUTATIONS[mutation](damaged, rng) or damaged[:1]
        yield name, mutation, damaged


def _reason_kind(message: str) -> str:
    """The reason without its numbers and details, to count rejections by kind."""
    reason = re.split(r"[:(;]", message, maxsplit=1)[0]
    return re.sub(r"\d[\d,.]*", "N", reason).strip()[:60]


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class FuzzTally:
    """Outcomes of one fuzz run: decoded, rejected by reason, and anything else (failures)."""

    def __init__(self) -> None:
        self.decoded = 0
        self.rejected: Counter[str] = Counter()
        self.failures: list[str] = []
        self.slowest = 0.0

    def run(self, case: str, read: Callable[[], np.ndarray], expected_error: type, check) -> None:
        started = time.perf_counter()
        try:
            image = read()
        except expected_error as error:
            problem = check(error)
            if problem:
                self.failures.append(f"{case}: {problem}")
            else:
                self.rejected[_reason_kind(error.reason)] += 1
        except Exception as error:  # noqa: BLE001 - any other exception is what we hunt for
            self.failures.append(f"{case}: {type(error).__name__}: {error}")
        else:
            if not (
                isinstance(image, np.ndarray)
                and image.ndim == 2
                and image.dtype == np.float32
                and np.isfinite(image).all()
                and 0 <= image.min() <= image.max() <= 1
            ):
                self.failures.append(f"{case}: decoded to an invalid array")
            else:
                self.decoded += 1
        elapsed = time.perf_counter() - started
        self.slowest = max(self.slowest, elapsed)
        if elapsed > SECONDS_PER_INPUT:
            self.failures.append(f"{case}: took {elapsed:.1f} s")

    def summary(self) -> str:
        rejected = ", ".join(f"{kind!r} {count}" for kind, count in self.rejected.most_common())
        return (
            f"{self.decoded} decoded, {sum(self.rejected.values())} rejected ({rejected}); "
            f"slowest {self.slowest:.2f} s; {len(self.failures)} failures"
        )


def _assert_clean(tally: FuzzTally, memory_before: float) -> None:
    print(tally.summary())
    assert not tally.failures, "\n".join(tally.failures[:20])
    assert tally.decoded > 0 and tally.rejected  # the damage both passes and breaks readers
    growth = _peak_memory_mb() - memory_before
    assert growth <= MAX_MEMORY_GROWTH_MB, f"peak memory grew by {growth:.0f} MB"


def test_seed_files_are_all_readable(tmp_path):
    for name, data in _seed_files(tmp_path).items():
        assert load_image(data).ndim == 2, name


@pytest.mark.timeout(300)
def test_load_image_decodes_or_rejects_naming_the_file(tmp_path):
    seeds = _seed_files(tmp_path)
    tally, memory_before = FuzzTally(), _peak_memory_mb()
    for index, (name, mutation, data) in enumerate(_damaged_inputs(seeds, FUZZ_CASES, seed=1)):
        suffix = Path(name).suffix if index % 4 else ""  # DICOM often comes without a suffix
        path = tmp_path / f"case-{index}-{mutation}{suffix}"
        path.write_bytes(data)

        def names_the_file(error: ImageReadError, path: Path = path) -> str | None:
            return None if error.source == str(path) and str(path) in str(error) else "no name"

        tally.run(
            f"{path.name} (from {name})",
            lambda path=path: load_image(path),
            ImageReadError,
            names_the_file,
        )
        path.unlink()
    _assert_clean(tally, memory_before)


@pytest.mark.timeout(300)
def test_app_input_path_decodes_or_rejects_naming_the_input(tmp_path):
    seeds = _seed_files(tmp_path)
    tally, memory_before = FuzzTally(), _peak_memory_mb()
    for index, (name, mutation, data) in enumerate(_damaged_inputs(seeds, FUZZ_CASES, seed=2)):

        def names_the_input(error: ImageReadError) -> str | None:
            named = error.named and str(error).startswith("cannot read the X-ray: ")
            return None if named else f"does not name the X-ray: {error}"

        tally.run(
            f"case {index} ({mutation} of {name})",
            lambda data=data: load_image(data, name="X-ray"),
            ImageReadError,
            names_the_input,
        )
    _assert_clean(tally, memory_before)
