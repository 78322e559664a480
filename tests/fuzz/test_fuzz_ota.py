# The OTA file reader under random and mutated input (it reads bytes from the
# network): the LZSS decoder never raises and its output is bounded by its
# input; the header/CRC/length checks and the tar extractor raise nothing but
# OtaError with a documented code, return promptly, and never write outside
# the slot directory, whatever the bytes and however they are split.

import os
import shutil
import sys
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from fuzzlib import FUZZ, bounded_call, cases, fewer, mutated, raw_bytes
from arduino_iot_cloud.ota import errors as codes
from arduino_iot_cloud.ota.errors import OtaError
from arduino_iot_cloud.ota.lzss import LZSSDecoder
from arduino_iot_cloud.ota.otafile import OtaReader
from arduino_iot_cloud.ota.tar import TarExtractor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ota"))
from otatools import app_files, bundle, literal_lzss, make_tar, ota_file  # noqa: E402

DOCUMENTED = set(codes.NAMES)

TARS = [make_tar(app_files(1)), make_tar({"a": None, "a/b.py": b"x" * 700, "c.txt": b""}),
        make_tar({"d" * 90 + "/" + "e" * 60 + "/f.py": b"y"})]
FILES = [bundle(app_files(1))[0], ota_file(literal_lzss(TARS[1])),
         ota_file(bytes.fromhex("b0bf7980") + literal_lzss(TARS[2]))]


def _pieces(data, rng):
    i = 0
    while i < len(data):
        n = rng.randint(1, 700)
        yield data[i:i + n]
        i += n


@FUZZ
@given(st.one_of(raw_bytes(), mutated(FILES)), st.randoms(use_true_random=False))
def test_lzss_decoder_never_raises_and_is_bounded(data, rng):
    for case in cases(data, rng):
        whole = bytes(LZSSDecoder().feed(case))
        assert len(whole) <= 17 * (len(case) * 8 // 16) + len(case)
        d = LZSSDecoder()
        split = b"".join(bytes(d.feed(p)) for p in _pieces(case, rng))
        assert split == whole
        assert len(d.ring) == 2048


def _outside(base):
    return sorted(os.listdir(base))


def _run(fn_make, data, rng):
    base = tempfile.mkdtemp(prefix="ota-fuzz-")
    try:
        dest = os.path.join(base, "slot")
        os.mkdir(dest)

        def consume():
            target = fn_make(dest)
            try:
                for piece in _pieces(data, rng):
                    target.feed(piece)
                return target.finish()
            finally:
                target.close()

        _, err = bounded_call(consume, OtaError)
        if err is not None:
            assert err.code in DOCUMENTED and str(err)
        assert _outside(base) == ["slot"], "something was written outside the slot"
    finally:
        shutil.rmtree(base)


@fewer(10)
@given(st.one_of(raw_bytes(), mutated(FILES)), st.randoms(use_true_random=False))
def test_ota_reader_raises_only_documented_errors(data, rng):
    for case in cases(data, rng, n=2):
        _run(lambda dest: OtaReader(dest, total=rng.choice([None, len(case)])), case, rng)


@fewer(10)
@given(mutated(TARS), st.randoms(use_true_random=False))
def test_tar_extractor_raises_only_bad_archive_or_storage(data, rng):
    _run(TarExtractor, data, rng)
