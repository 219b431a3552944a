"""What one request, and all requests together, may make the server allocate.

Every check here reads only what the client actually sent: the TensorProto's declared dtype and
shape against the signature and against the bytes or values it carries, and the headers of
encoded images. Nothing is expanded or decoded before it passes, so a few hundred bytes can no
longer ask for gigabytes (``tf.make_ndarray`` fills a declared shape from a single value).

Memory, per server (measured by benchmarks/bench_serving_memory.py): a request holds up to ~5
copies of its message while it runs (gRPC's buffer, the parsed proto, numpy, the TF tensor,
map_fn's TensorArray), so ``max_concurrent_requests`` x ``max_message_bytes`` bounds that part;
``edit_encoded`` decodes each image at full size, then casts it to float32 for the resize
(~15 bytes per pixel), and ``max_decoded_pixels``, a budget shared by all requests, bounds that:
a request waits until its images fit. Peak RSS <= idle + concurrent x 6 x message bytes
+ decoded pixels x 16 bytes (+ allocator slack).
"""

from __future__ import annotations

import io
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

# This module stays light (no grpc, numpy or PIL at import): `l2m serve` reads its defaults
# and probes the port before the heavy imports.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGES_PER_REQUEST = 32
MAX_CONCURRENT_REQUESTS = 16
ENCODED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")  # what tf.io.decode_image reads

# TensorProto field holding each dtype's values when tensor_content is empty, and how many
# entries one element takes (complex numbers are two). By DataType number (types.proto).
_VALUE_FIELDS = {
    1: ("float_val", 1), 2: ("double_val", 1), 3: ("int_val", 1), 4: ("int_val", 1),
    5: ("int_val", 1), 6: ("int_val", 1), 7: ("string_val", 1), 8: ("scomplex_val", 2),
    9: ("int64_val", 1), 10: ("bool_val", 1), 14: ("half_val", 1), 17: ("int_val", 1),
    18: ("dcomplex_val", 2), 19: ("half_val", 1), 22: ("uint32_val", 1), 23: ("uint64_val", 1),
}
_STRING = 7


class ServingError(Exception):
    """A request error carrying its gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def _invalid(message: str) -> ServingError:
    import grpc

    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass
class ServingLimits:
    """Server-wide limits (the `l2m serve --max-*` options)."""

    max_images_per_request: int = MAX_IMAGES_PER_REQUEST
    max_concurrent_requests: int = MAX_CONCURRENT_REQUESTS
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Decoded pixels of edit_encoded images in flight across all requests; one image may have
    # up to max_image_pixels (None: l2m edit's limit, keras_l2mgan.photo.MAX_PIXELS), and by
    # default the budget lets one such photo decode at a time.
    max_decoded_pixels: int | None = None
    max_image_pixels: int | None = None

    def __post_init__(self):
        from keras_l2mgan.photo import MAX_PIXELS

        if self.max_image_pixels is None:
            self.max_image_pixels = MAX_PIXELS
        if self.max_decoded_pixels is None:
            self.max_decoded_pixels = MAX_PIXELS
        for name in ("max_images_per_request", "max_concurrent_requests", "max_message_bytes",
                     "max_decoded_pixels", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be >= 1, "
                                 f"got {getattr(self, name)}")


def _dtype_name(dtype: int) -> str:
    import tensorflow as tf

    try:
        return tf.dtypes.as_dtype(dtype).name
    except TypeError:
        return f"DataType {dtype}"


def check_tensor(alias: str, proto, expected, limits: ServingLimits) -> None:
    """Check one TensorProto against its signature TensorInfo before anything is allocated:
    dtype, a known rank with no negative dims, the signature's shape, the per-request image
    cap on the batch dimension, and that the values sent are exactly one per declared element."""
    import tensorflow as tf

    if proto.dtype != expected.dtype:
        raise _invalid(f"Expects arg {alias} to be {_dtype_name(expected.dtype)} but "
                       f"{_dtype_name(proto.dtype)} is provided")
    if proto.tensor_shape.unknown_rank:
        raise _invalid(f"input {alias} has an unknown rank; send its shape")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in dims):
        raise _invalid(f"input {alias} has a negative dimension in its shape {dims}")
    signature_shape = tf.TensorShape(expected.tensor_shape)
    if not signature_shape.is_compatible_with(dims):
        raise _invalid(
            f"input {alias} has shape {dims}, incompatible with the signature's "
            f"{signature_shape.as_list() if signature_shape.rank is not None else 'unknown'}")
    batched = signature_shape.rank and signature_shape[0] is None
    if batched and dims[0] > limits.max_images_per_request:
        raise _invalid(f"input {alias} has {dims[0]} entries, over the server's limit of "
                       f"{limits.max_images_per_request} images per request "
                       "(--max-images-per-request); split it into several requests")
    count = 1
    for size in dims:
        count *= size
    field, per_element = _VALUE_FIELDS.get(proto.dtype, (None, 1))
    if field is None:
        raise _invalid(f"input {alias}: dtype {_dtype_name(proto.dtype)} is not supported")
    if proto.tensor_content:
        if proto.dtype == _STRING:
            raise _invalid(f"input {alias} is a string tensor: send its values in string_val, "
                           "not tensor_content")
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        if len(proto.tensor_content) != count * itemsize:
            raise _invalid(f"input {alias} declares shape {dims} ({count * itemsize} bytes) but "
                           f"sends {len(proto.tensor_content)} bytes of tensor_content")
        return
    sent = len(getattr(proto, field))
    if sent != count * per_element:
        # TensorFlow would repeat the last value to fill the shape; a request must send them all.
        raise _invalid(f"input {alias} declares shape {dims} ({count} values) but sends {sent} "
                       f"in {field}")


def _webp_size(data: bytes) -> tuple[tuple[int, int], bool]:
    """((width, height), animated) from a WebP's first chunk header. PIL's WebP reader
    allocates the whole canvas when it opens a file, so it is not used for the check."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return (width & 0x3FFF, height & 0x3FFF), False
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1), False
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return (width, height), bool(data[20] & 0x02)
    raise ValueError("not a WebP header TensorFlow can read")


def _image_header(data: bytes) -> tuple[str, tuple[int, int], bool]:
    """(format, (width, height), animated) from an encoded image's header, without decoding."""
    from PIL import Image

    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size, animated = _webp_size(data)
        return "WEBP", size, animated
    formats = [f for f in ENCODED_FORMATS if f != "WEBP"]
    # Image.open reads headers only; pixels are decoded on load(), which never happens here.
    with Image.open(io.BytesIO(data), formats=formats) as image:
        animated = image.format == "GIF" and image.is_animated
        return image.format, image.size, animated


def encoded_pixels(alias: str, values, limits: ServingLimits) -> int:
    """The pixels edit_encoded will decode for these encoded images (checked one by one
    against max_image_pixels), from their headers; INVALID_ARGUMENT naming the bad entry."""
    from PIL import Image, UnidentifiedImageError

    total = 0
    for index, data in enumerate(values):
        name = f"{alias}[{index}]"
        try:
            kind, (width, height), animated = _image_header(bytes(data))
        except Image.DecompressionBombError:
            raise _invalid(f"{name} has over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, over the "
                           f"{limits.max_image_pixels:,} pixels limit per image") from None
        except UnidentifiedImageError:
            raise _invalid(f"{name} is not a {', '.join(ENCODED_FORMATS)} image (or its header "
                           "is corrupt)") from None
        except (OSError, ValueError, SyntaxError, struct.error, EOFError) as error:
            raise _invalid(f"{name} has a corrupt image header: {error}") from None
        if animated:
            # decode_image reads every frame of an animation; stills only.
            raise _invalid(f"{name} is an animated {kind}; send a still image")
        pixels = width * height
        if pixels > limits.max_image_pixels:
            raise _invalid(f"{name} is {width}x{height} = {pixels:,} pixels, over the "
                           f"{limits.max_image_pixels:,} pixels limit per image; downscale it")
        total += pixels
    if total > limits.max_decoded_pixels:
        raise _invalid(f"{alias} decodes to {total:,} pixels, over the server's budget of "
                       f"{limits.max_decoded_pixels:,} (--max-decoded-pixels); send fewer or "
                       "smaller images per request")
    return total


class PixelBudget:
    """Decoded pixels in flight across requests. A request reserves its images' pixels before
    running and waits, first come first served, until they fit."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._queue: deque[object] = deque()
        self._condition = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int, timeout_s: float | None = None) -> Iterator[None]:
        if pixels <= 0:
            yield
            return
        ticket = object()
        with self._condition:
            self._queue.append(ticket)
            try:
                fits = self._condition.wait_for(
                    lambda: self._queue[0] is ticket and self.used + pixels <= self.total,
                    timeout=timeout_s)
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()
            if not fits:
                import grpc

                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"the server's decoded-pixel budget ({self.total:,}) stayed "
                                   "busy until the deadline; retry later")
            self.used += pixels
        try:
            yield
        finally:
            with self._condition:
                self.used -= pixels
                self._condition.notify_all()


def check_port_free(host: str, port: int) -> None:
    """ValueError if another process listens on host:port. gRPC reports a failed bind through
    its own log as well; this probe gives the one clear line first (before TensorFlow loads)."""
    if port == 0:
        return
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                        flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ValueError(f"cannot listen on {address}: {error.strerror}") from None
    for family, kind, proto, _, sockaddr in candidates:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC does: a closed server's TIME_WAIT sockets do not hold the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as error:
                raise ValueError(f"cannot listen on {address}: {error.strerror} (another "
                                 "server on this port?); pick another --port") from None
