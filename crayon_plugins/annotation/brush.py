"""Label Studio's brush masks: the run-length code its brush tool stores regions in.

A region is an RGBA picture of the image's size, flattened (each pixel's four bytes in turn) and
packed as bits: the value count (32 bits), the word size minus one (5 bits), four run-length field
sizes minus one (4 bits each), then tokens. A token starts with one bit: 1, a run (a 2-bit index into
the field sizes, that many bits of length minus one, one word repeated); 0, literals (the same
length field, then that many words). Label Studio's own converter (``label_studio_sdk.converter.brush``)
reads and writes this code; it is not a dependency here because it pins an older numpy through
OpenCV. The test suite checks these functions against it byte for byte.
"""

from __future__ import annotations

import numpy as np

_SIZES = (3, 4, 8, 16)
"""The run-length field sizes Label Studio writes (bits)."""


def encode(mask: np.ndarray) -> list[int]:
    """The brush code of the ``(H, W)`` bool ``mask`` (painted pixels 255 in every channel), as
    Label Studio's converter writes it (``mask2rle``)."""
    values = np.repeat(np.where(np.asarray(mask, dtype=bool).ravel(), 255, 0).astype(np.uint8), 4)
    bits = [f"{len(values):032b}", f"{8 - 1:05b}", "".join(f"{size - 1:04b}" for size in _SIZES)]
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change]) if len(values) else np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.concatenate([starts, [len(values)]]))
    for start, length in zip(starts.tolist(), lengths.tolist()):
        word = f"{int(values[start]):08b}"
        if length == 1:
            bits.append("0" + "00" + "000" + word)
            continue
        while length > 2**16:
            bits.append("1" + "11" + f"{2**16 - 1:016b}" + word)
            length -= 2**16
        index = next(k for k, size in enumerate(_SIZES) if length <= 2**size)
        bits.append("1" + f"{index:02b}" + f"{length - 1:0{_SIZES[index]}b}" + word)
    text = "".join(bits)
    text += "0" * (8 - len(text) % 8)  # the converter always pads, a whole byte when already aligned
    return [int(text[i : i + 8], 2) for i in range(0, len(text), 8)]


def decode(code: list[int], height: int, width: int) -> np.ndarray:
    """The ``(H, W)`` bool mask a brush code paints (alpha above 127). :class:`ValueError` when the
    code is malformed or does not hold ``height × width`` RGBA values."""
    if not all(isinstance(byte, int) and 0 <= byte < 256 for byte in code):
        raise ValueError("a brush code is a list of bytes (integers 0 to 255)")
    bits = np.unpackbits(np.asarray(code, dtype=np.uint8))
    position = 0

    def read(count: int) -> int:
        nonlocal position
        if position + count > len(bits):
            raise ValueError("the brush code ends in the middle of a value")
        chunk = bits[position : position + count]
        position += count
        return int("".join(map(str, chunk.tolist())) or "0", 2)

    count, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    if count != height * width * 4:
        raise ValueError(f"the brush code holds {count} values, a {width}×{height} picture has {height * width * 4}")
    if word > 8:
        raise ValueError(f"the brush code's words are {word} bits; masks have 8")
    out = np.zeros(count, dtype=np.uint8)
    i = 0
    while i < count:
        run = read(1)
        end = min(count, i + 1 + read(sizes[read(2)]))
        if run:
            out[i:end] = read(word)
        else:
            for k in range(i, end):
                out[k] = read(word)
        i = end
    return out.reshape(height, width, 4)[:, :, 3] > 127
