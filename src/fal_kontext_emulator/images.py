"""Real output images for emulated requests: cheap, deterministic, visibly derived from the inputs.

An output is the first input image fitted to the output size, with the other inputs inset, a tint and a few
shapes chosen by the seed and the image index, encoded as JPEG or PNG. The same seed and inputs always give
the same bytes. Work is cached per (inputs, seed, index, size, format) so repeated reads cost nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import math
import random
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageOps

# Kontext returns about one megapixel; sizes are multiples of 16 (latent patches). Not a fal-documented fact:
# an approximation of what the model gives for each aspect ratio.
_PIXELS = 1024 * 1024
_STEP = 16
# The ratios of fal's AspectRatio enum span 9:21 to 21:9; an input image's own ratio is clamped to that range.
_MIN_RATIO, _MAX_RATIO = 9 / 21, 21 / 9
# Inputs are shrunk once when decoded: no output side is larger than this.
_INPUT_SIDE = 1600
# Decoded inputs and composed bases kept in memory (about 3-5 MB each).
_KEPT_INPUTS = 32
_KEPT_BASES = 16
# Refuse decompression bombs: an input may have at most this many pixels.
MAX_INPUT_PIXELS = 50_000_000

# Pictures derived from text are small: they stand in for an input, which the renderer fits to the output size.
_DERIVED_SIZES = ((768, 512), (512, 512), (512, 768), (896, 512))
_SQUARE = (512, 512)

_DATA_URI = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)

# Reads one input image's bytes, or raises InputImageError.
ReadInput = Callable[[], bytes]


class InputImageError(Exception):
    """An input image could not be read or decoded; `kind` is fal's error type, `index` the list position."""

    def __init__(self, message: str, kind: str = "file_download_error", index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.index = index


@dataclass(frozen=True)
class RenderedImage:
    """One encoded output image."""

    data: bytes
    width: int
    height: int
    content_type: str


def output_size(aspect_ratio: str | None, source_size: tuple[int, int]) -> tuple[int, int]:
    """Width and height of an output: about one megapixel at `aspect_ratio` (e.g. "16:9"), or at the input's ratio."""
    if aspect_ratio:
        across, down = (int(part) for part in aspect_ratio.split(":"))
        ratio = across / down
    else:
        ratio = min(max(source_size[0] / max(source_size[1], 1), _MIN_RATIO), _MAX_RATIO)
    width = max(_STEP, round(math.sqrt(_PIXELS * ratio) / _STEP) * _STEP)
    height = max(_STEP, round(_PIXELS / width / _STEP) * _STEP)
    return width, height


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """Decode a `data:` URI (base64 or percent-encoded).

    Raises:
        InputImageError: `value_error` when malformed, `image_too_large` when over `max_bytes`.
    """
    found = _DATA_URI.fullmatch(uri)
    if found is None:
        raise InputImageError("Invalid data URI: expected data:<mime type>;base64,<data>", "value_error")
    data = found["data"]
    is_base64 = ";base64" in found["params"].lower()
    estimated = len(data) * 3 // 4 if is_base64 else len(data) // 3
    if estimated > max_bytes:
        raise InputImageError(f"Data URI is larger than {max_bytes} bytes", "image_too_large")
    if not is_base64:
        raw = urllib.parse.unquote_to_bytes(data)
    else:
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise InputImageError(f"Invalid base64 in data URI: {err}", "value_error") from err
    if len(raw) > max_bytes:
        raise InputImageError(f"Data URI is larger than {max_bytes} bytes", "image_too_large")
    return raw


@functools.lru_cache(maxsize=64)
def derived_picture(text: str, *, square: bool = False) -> bytes:
    """A PNG derived from `text` alone (a URL, a prompt): background, bands and discs in colours and places its
    SHA-256 picks; square with `square`, else of a size it picks too. The same text gives the same bytes."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    width, height = _SQUARE if square else rng.choice(_DERIVED_SIZES)
    picture = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(picture)
    for _ in range(4):
        top = rng.randrange(height)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((0, top, width, top + rng.randrange(8, height // 4)), fill=colour)
    for _ in range(3):
        x, y, radius = rng.randrange(width), rng.randrange(height), rng.randrange(24, min(width, height) // 3)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(rng.randrange(256) for _ in range(3)))
    draw.text((16, height - 28), text.rsplit("/", 1)[-1][:48], fill=(255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class ImageRenderer:
    """Decodes inputs and renders outputs, with byte-bounded caches shared by all requests (thread-safe)."""

    def __init__(self, cache_bytes: int = 64 * 1024 * 1024) -> None:
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._outputs: OrderedDict[tuple[object, ...], RenderedImage] = OrderedDict()
        self._output_bytes = 0
        self._inputs: OrderedDict[str, Image.Image] = OrderedDict()
        self._bases: OrderedDict[tuple[tuple[str, ...], tuple[int, int]], Image.Image] = OrderedDict()

    def render(
        self,
        inputs: Sequence[ReadInput],
        *,
        seed: int,
        count: int,
        aspect_ratio: str | None,
        output_format: str,
    ) -> list[RenderedImage]:
        """Render `count` images from the inputs (each a callable that returns the image's bytes).

        Raises:
            InputImageError: an input could not be read or is not an image; `index` says which.
        """
        sources = []
        digests = []
        for index, read_input in enumerate(inputs):
            try:
                raw = read_input()
                sources.append(self._decoded(raw))
            except InputImageError as err:
                raise InputImageError(err.message, err.kind, index) from err
            digests.append(hashlib.sha256(raw).hexdigest())
        size = output_size(aspect_ratio, sources[0].size)
        images = []
        for index in range(count):
            key = (tuple(digests), seed, index, size, output_format)
            with self._lock:
                cached = self._outputs.get(key)
                if cached is not None:
                    self._outputs.move_to_end(key)
            if cached is None:
                cached = _draw(self._base(tuple(digests), sources, size), seed, index, output_format)
                self._remember(key, cached)
            images.append(cached)
        return images

    def _base(self, digests: tuple[str, ...], sources: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
        # Fitting the inputs is most of the work, and load tests send the same inputs with many seeds.
        key = (digests, size)
        with self._lock:
            cached = self._bases.get(key)
            if cached is not None:
                self._bases.move_to_end(key)
                return cached
        base = _compose(sources, size)
        with self._lock:
            self._bases[key] = base
            while len(self._bases) > _KEPT_BASES:
                self._bases.popitem(last=False)
        return base

    def _decoded(self, raw: bytes) -> Image.Image:
        digest = hashlib.sha256(raw).hexdigest()
        with self._lock:
            cached = self._inputs.get(digest)
            if cached is not None:
                self._inputs.move_to_end(digest)
                return cached
        try:
            with Image.open(io.BytesIO(raw)) as opened:
                if opened.width * opened.height > MAX_INPUT_PIXELS:
                    raise InputImageError(
                        f"Input image is {opened.width}x{opened.height}, over {MAX_INPUT_PIXELS} pixels",
                        "image_too_large",
                    )
                # JPEG can decode straight at a reduced scale: much cheaper for large photos.
                opened.draft("RGB", (_INPUT_SIDE, _INPUT_SIDE))
                image = opened.convert("RGB")
        except InputImageError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise InputImageError(f"Could not decode the input image: {err}") from err
        image.thumbnail((_INPUT_SIDE, _INPUT_SIDE))
        with self._lock:
            self._inputs[digest] = image
            while len(self._inputs) > _KEPT_INPUTS:
                self._inputs.popitem(last=False)
        return image

    def _remember(self, key: tuple[object, ...], image: RenderedImage) -> None:
        with self._lock:
            if key in self._outputs:
                return
            self._outputs[key] = image
            self._output_bytes += len(image.data)
            while self._output_bytes > self._cache_bytes and len(self._outputs) > 1:
                _, dropped = self._outputs.popitem(last=False)
                self._output_bytes -= len(dropped.data)


def _compose(sources: Sequence[Image.Image], size: tuple[int, int]) -> Image.Image:
    """The part of an output that depends only on the inputs: the first fitted, the next ones inset."""
    width, height = size
    picture = ImageOps.fit(sources[0], size, Image.Resampling.BILINEAR)
    # Further inputs go in as insets along the bottom, so a multi-image edit visibly uses each of them.
    inset_width = width // 4
    for position, extra in enumerate(sources[1:4]):
        inset = ImageOps.fit(extra, (inset_width, max(1, inset_width * height // width)), Image.Resampling.BILINEAR)
        picture.paste(inset, (_STEP + position * (inset_width + _STEP), height - inset.height - _STEP))
    return picture


def _draw(base: Image.Image, seed: int, index: int, output_format: str) -> RenderedImage:
    """The seed's variation of a composed base: a tint, three rings, a frame and a caption; then encoded."""
    rng = random.Random(f"{seed}:{index}")
    width, height = base.size
    tint = tuple(rng.randrange(256) for _ in range(3))
    # A quarter of the tint mixed into every pixel, as one lookup table per channel (cheaper than a blend).
    table = [round(value * 0.75 + channel * 0.25) for channel in tint for value in range(256)]
    picture = base.point(table)
    draw = ImageDraw.Draw(picture)
    for _ in range(3):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(_STEP * 2, min(width, height) // 4)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour, width=6)
    draw.rectangle((0, 0, width - 1, height - 1), outline=tint, width=8)
    draw.text((24, 24), f"fal-kontext emulator  seed {seed}  image {index}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    if output_format == "png":
        # The fastest zlib level: the emulator runs on small CI machines and the size does not matter.
        picture.save(buffer, format="PNG", compress_level=1)
        content_type = "image/png"
    else:
        # Quality 75 encodes about twice as fast as 85; nobody judges an emulator by its JPEG artefacts.
        picture.save(buffer, format="JPEG", quality=75)
        content_type = "image/jpeg"
    return RenderedImage(buffer.getvalue(), width, height, content_type)
