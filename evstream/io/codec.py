"""Packet compression of AEDAT 4.0 files and DV network streams (NONE, LZ4, ZSTD and their HIGH levels).

Each compressed packet payload is one LZ4 *frame* or one Zstandard frame (formats.md §1.4);
LZ4_HIGH and ZSTD_HIGH are the same formats at a higher level, so decoders treat them alike (as
``neuromorphicsystems/aedat`` ``src/aedat_core.rs`` does). Both libraries release the GIL while
they work, so packets can be decompressed in a thread pool.

Decompression is bounded: a payload never expands past :data:`MAX_PACKET_BYTES`, so a damaged or
hostile size field cannot make the reader allocate without limit.
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import lz4.frame
import zstandard

__all__ = [
    "COMPRESSION_NAMES",
    "CompressionError",
    "MAX_PACKET_BYTES",
    "compress",
    "decompress",
    "compression_code",
    "lz4_decompress_into",
]

# Code -> name, as in the IOHeader enum and dv_processing.CompressionType.
COMPRESSION_NAMES = ("NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH")

# 256 MiB = 16.7 M events: far above any packet a DV camera or dv-processing writes.
MAX_PACKET_BYTES = 1 << 28

_LZ4_LEVEL = {1: 0, 2: 9}
_ZSTD_LEVEL = {3: 3, 4: 15}
_ZSTD_CHUNK = 1 << 20


class CompressionError(ValueError):
    """A payload does not decompress (corrupt frame, wrong codec, or too large)."""


def compression_code(name: str) -> int:
    """Enum value of a compression name (case-insensitive); raises ``ValueError`` for others."""
    key = name.upper()
    if key not in COMPRESSION_NAMES:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSION_NAMES)}, got {name!r}")
    return COMPRESSION_NAMES.index(key)


def compress(code: int, data: bytes) -> bytes:
    """One packet payload compressed with codec ``code`` (0 returns ``data`` unchanged)."""
    if code == 0:
        return data
    if code in _LZ4_LEVEL:
        return lz4.frame.compress(data, compression_level=_LZ4_LEVEL[code], store_size=True)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL[code]).compress(data)


def decompress(code: int, data) -> bytes:
    """Decompress one payload (bytes-like) written with codec ``code``.

    Raises:
        CompressionError: corrupt or truncated frame, or more than
            :data:`MAX_PACKET_BYTES` of output.
    """
    if code == 0:
        return data
    try:
        if code in (1, 2):
            return _lz4(data)
        return _zstd(data)
    except (RuntimeError, zstandard.ZstdError, ValueError) as err:
        if isinstance(err, CompressionError):
            raise
        raise CompressionError(f"{COMPRESSION_NAMES[code]} frame does not decompress: {err}") from err


def _lz4(data) -> bytes:
    info = lz4.frame.get_frame_info(data)
    if info["content_size"] > MAX_PACKET_BYTES:
        raise CompressionError(f"LZ4 frame declares {info['content_size']} bytes, above the {MAX_PACKET_BYTES} limit")
    # Without a declared size the output is bounded by LZ4's own worst ratio (255:1) times a payload
    # size already checked against the file.
    out = lz4.frame.decompress(data)
    if len(out) > MAX_PACKET_BYTES:
        raise CompressionError(f"LZ4 frame expands to {len(out)} bytes, above the {MAX_PACKET_BYTES} limit")
    return out


def _zstd(data) -> bytes:
    size = zstandard.frame_content_size(bytes(data[:18]))
    if size > MAX_PACKET_BYTES:
        raise CompressionError(f"ZSTD frame declares {size} bytes, above the {MAX_PACKET_BYTES} limit")
    dctx = zstandard.ZstdDecompressor()
    if size >= 0:
        out = dctx.decompress(data)
        if len(out) != size:
            raise CompressionError(f"ZSTD frame gave {len(out)} bytes, its header declares {size}")
        return out
    parts, total = [], 0
    for chunk in dctx.read_to_iter(data, write_size=_ZSTD_CHUNK):
        total += len(chunk)
        if total > MAX_PACKET_BYTES:
            raise CompressionError(f"ZSTD frame expands past the {MAX_PACKET_BYTES} limit")
        parts.append(chunk)
    return b"".join(parts)


def _lz4f_library():
    """liblz4's frame API as linked into python-lz4's extension (its LZ4F_* symbols are exported).

    Used through ctypes (which releases the GIL) to decompress straight into a caller's buffer:
    python-lz4 only returns new bytes objects, and the extra allocation and copy cost as much as
    the decompression itself on large recordings. ``None`` when the symbols are not there.
    """
    try:
        lib = ctypes.CDLL(lz4.frame._frame.__file__)
        size_t_p = ctypes.POINTER(ctypes.c_size_t)
        lib.LZ4F_createDecompressionContext.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint]
        lib.LZ4F_createDecompressionContext.restype = ctypes.c_size_t
        lib.LZ4F_freeDecompressionContext.argtypes = [ctypes.c_void_p]
        lib.LZ4F_freeDecompressionContext.restype = ctypes.c_size_t
        lib.LZ4F_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, size_t_p, ctypes.c_void_p, size_t_p,
                                        ctypes.c_void_p]
        lib.LZ4F_decompress.restype = ctypes.c_size_t
        lib.LZ4F_resetDecompressionContext.argtypes = [ctypes.c_void_p]
        lib.LZ4F_resetDecompressionContext.restype = None
        lib.LZ4F_isError.argtypes = [ctypes.c_size_t]
        lib.LZ4F_isError.restype = ctypes.c_uint
    except (OSError, AttributeError):
        return None
    return lib


_LZ4F = _lz4f_library()
_LZ4F_VERSION = 100


class _Context:
    """One LZ4F decompression context per thread, reused across packets, freed with the thread."""

    def __init__(self) -> None:
        self.dctx = ctypes.c_void_p()
        if _LZ4F.LZ4F_isError(_LZ4F.LZ4F_createDecompressionContext(ctypes.byref(self.dctx), _LZ4F_VERSION)):
            raise MemoryError("LZ4F_createDecompressionContext failed")
        weakref.finalize(self, _LZ4F.LZ4F_freeDecompressionContext, self.dctx)


_local = threading.local()


def lz4_decompress_into(src: bytes, start: int, targets: list[tuple[int, int]]) -> bool:
    """Decompress the LZ4 frame ``src[start:]`` into consecutive targets, exactly filling them.

    Args:
        src: bytes holding the frame.
        start: offset of the frame inside ``src``.
        targets: ``(address, size)`` of writable memory regions, filled in order.

    Returns:
        ``True`` when the frame decoded completely and filled every target exactly; ``False``
        otherwise (corrupt frame, other sizes, fast path unavailable): the caller then decodes with
        :func:`decompress`, which reports the fault.
    """
    if _LZ4F is None:
        return False
    context = getattr(_local, "lz4f", None)
    if context is None:
        context = _local.lz4f = _Context()
    dctx = context.dctx
    try:
        base = ctypes.cast(ctypes.c_char_p(src), ctypes.c_void_p).value
        pos, end = start, len(src)
        hint = 1
        src_size, dst_size = ctypes.c_size_t(), ctypes.c_size_t()
        for address, size in targets:
            filled = 0
            while filled < size:
                if pos >= end:
                    return False
                src_size.value, dst_size.value = end - pos, size - filled
                hint = _LZ4F.LZ4F_decompress(dctx, address + filled, ctypes.byref(dst_size), base + pos,
                                             ctypes.byref(src_size), None)
                if _LZ4F.LZ4F_isError(hint):
                    return False
                pos += src_size.value
                filled += dst_size.value
                if hint == 0 and filled < size:
                    return False
        if hint != 0:
            # The targets are full: the frame must end here without producing more output.
            src_size.value, dst_size.value = end - pos, 0
            hint = _LZ4F.LZ4F_decompress(dctx, None, ctypes.byref(dst_size), base + pos, ctypes.byref(src_size), None)
            if _LZ4F.LZ4F_isError(hint) or hint != 0 or dst_size.value:
                return False
        return True
    finally:
        # A failed or unfinished frame leaves state behind; the next packet starts clean.
        _LZ4F.LZ4F_resetDecompressionContext(dctx)
