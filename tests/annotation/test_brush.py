"""Label Studio's brush code: hand-worked bytes, round trips, and byte-for-byte agreement with Label
Studio's own converter (run in its environment)."""

import json
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crayon_plugins.annotation.brush import decode, encode
from crayon_plugins.testing.label_studio import label_studio_venv, missing_label_studio


def test_a_two_pixel_mask_encodes_to_the_bytes_worked_by_hand():
    # pixels (painted, clear): values 255 ×4, 0 ×4: two runs of 4
    # header: 8 as 32 bits, word size 7 as 5 bits, sizes 2 3 7 15 as 4 bits each
    # runs: 1 00 011 11111111, 1 00 011 00000000; then zeros to the byte (the converter pads)
    bits = f"{8:032b}" + "00111" + "0010" + "0011" + "0111" + "1111" + "100011" + "11111111" + "100011" + "00000000"
    bits += "0" * (8 - len(bits) % 8)
    assert encode(np.array([[True, False]])) == [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode(encode(np.array([[True, False]])), 1, 2).tolist() == [[True, False]]


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_any_mask_comes_back_from_its_code(mask):
    assert np.array_equal(decode(encode(mask), *mask.shape), mask)


def test_long_runs_cross_the_sixteen_bit_field():
    mask = np.zeros((200, 200), dtype=bool)  # 160 000 values of 0: two full 65 536-runs and the rest
    mask[150, 3] = True
    assert np.array_equal(decode(encode(mask), 200, 200), mask)


@pytest.mark.parametrize(("code", "message"), [([0, 0, 0, 8], "ends in the middle"), ([0, 0, 0, 8, 0xE0, 0, 0, 0], "holds 8 values, a 1×1 picture has 4"), ([300], "list of bytes")])
def test_a_malformed_code_is_a_value_error(code, message):
    with pytest.raises(ValueError, match=message):
        decode(code, 1, 1)


def test_the_codes_are_label_studios_own_byte_for_byte():
    if why := missing_label_studio():
        pytest.skip(why)
    rng = np.random.default_rng(0)
    masks = [rng.random((h, w)) < p for h, w, p in ((7, 5, 0.5), (32, 32, 0.1), (64, 48, 0.9), (300, 300, 0.0005))]
    masks[2][10:40, 5:30] = False
    script = (
        "import json, sys, numpy as np\n"
        "from label_studio_sdk.converter.brush import decode_rle, mask2rle\n"
        "masks = [np.array(m, dtype=np.uint8) * 255 for m in json.load(sys.stdin)]\n"
        "codes = [mask2rle(m) for m in masks]\n"
        "back = [(decode_rle(c).reshape(m.shape[0], m.shape[1], 4)[:, :, 3] > 127).tolist() for c, m in zip(codes, masks)]\n"
        "print(json.dumps({'codes': codes, 'back': back}))\n"
    )
    done = subprocess.run([str(label_studio_venv() / "bin" / "python"), "-c", script], input=json.dumps([m.tolist() for m in masks]), capture_output=True, text=True, timeout=300, check=True)
    theirs = json.loads(done.stdout)
    for mask, code, back in zip(masks, theirs["codes"], theirs["back"]):
        assert encode(mask) == code  # we write what Label Studio writes
        assert np.array_equal(decode(code, *mask.shape), mask) and back == mask.tolist()  # and read what it reads
