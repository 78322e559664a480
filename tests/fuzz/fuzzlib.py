# Shared pieces of the fuzz tests: settings, input strategies (random bytes,
# mutations of a valid corpus, structured CBOR), and the check that a call
# raises nothing but the library's documented errors, promptly.

import math
import os
import time

import cbor2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Cases per decoder.  10000 by default; `make fuzz` sets FUZZ_EXAMPLES higher.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10000"))
# Hypothesis spends ~2 ms drawing one structured example, far more than a
# decode takes, so each example also checks PER_EXAMPLE - 1 cheap mutants of
# its input, made with a random.Random that hypothesis seeds (reproducible,
# and shrunk with the rest).  Cases per decoder = examples x PER_EXAMPLE.
PER_EXAMPLE = 5
# No single decode may take longer than this (a "hang" in a test's eyes).
CALL_LIMIT_S = 2.0
# Whole-test wall-clock limit, grown with the number of examples.
TEST_TIME_LIMIT = max(300, EXAMPLES // 20)

FUZZ = settings(
    max_examples=max(100, EXAMPLES // PER_EXAMPLE),
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)


def fewer(n):
    """Settings for a side test: EXAMPLES // n examples."""
    return settings(FUZZ, max_examples=max(100, EXAMPLES // n))


def cases(data, rng, n=PER_EXAMPLE):
    """data itself, then n - 1 quick mutants of it."""
    out = [data]
    for _ in range(n - 1):
        out.append(quick_mutant(rng, data))
    return out


def quick_mutant(rng, data):
    """1..4 random edits of data, driven by rng (a random.Random)."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randint(0, 5)
        n = len(data)
        if op == 0 and n:
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.choice(_INTERESTING)
        elif op == 2:
            i = rng.randint(0, n)
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        elif op == 3 and n:
            i = rng.randrange(n)
            del data[i:i + rng.randint(1, 8)]
        elif op == 4 and n:
            del data[rng.randrange(n):]
        elif op == 5 and n:
            i = rng.randrange(n)
            data[i:i] = data[i:i + rng.randint(1, 12)]
    return bytes(data)


def bounded_call(fn, allowed, *args):
    """Call fn(*args); return (result, None) or (None, error) for an allowed error.

    Any other exception is a failure (it propagates), and so is a call that
    takes longer than CALL_LIMIT_S.
    """
    t0 = time.perf_counter()
    try:
        result, err = fn(*args), None
    except allowed as e:
        result, err = None, e
    took = time.perf_counter() - t0
    assert took < CALL_LIMIT_S, "%s took %.2f s" % (getattr(fn, "__name__", fn), took)
    return result, err


# --- mutations of valid inputs -----------------------------------------------------

_INTERESTING = (0x00, 0x01, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x3F, 0x40, 0x5F, 0x7F, 0x80,
                0x9F, 0xA0, 0xBF, 0xC0, 0xD8, 0xDA, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFA, 0xFB,
                0xFF, 0x30, 0x32, 0x20, 0x90, 0xD0)


@st.composite
def mutated(draw, corpus):
    """A corpus entry with 1..8 random edits (flip, set, insert, delete, splice, cut)."""
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.integers(0, 6))
        n = len(data)
        if op == 0 and n:  # flip one bit
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and n:  # set a byte to an interesting value
            i = draw(st.integers(0, n - 1))
            data[i] = draw(st.sampled_from(_INTERESTING))
        elif op == 2:  # insert bytes
            i = draw(st.integers(0, n))
            data[i:i] = draw(st.binary(min_size=1, max_size=9))
        elif op == 3 and n:  # delete a run
            i = draw(st.integers(0, n - 1))
            del data[i:i + draw(st.integers(1, 8))]
        elif op == 4 and n:  # truncate
            del data[draw(st.integers(0, n - 1)):]
        elif op == 5:  # splice in a piece of another corpus entry
            other = draw(st.sampled_from(corpus))
            if other:
                a = draw(st.integers(0, len(other) - 1))
                i = draw(st.integers(0, n))
                data[i:i] = other[a:a + draw(st.integers(1, 16))]
        elif op == 6 and n:  # duplicate a run
            i = draw(st.integers(0, n - 1))
            data[i:i] = data[i:i + draw(st.integers(1, 12))]
    return bytes(data)


def raw_bytes(max_size=200):
    return st.binary(max_size=max_size)


# --- structured CBOR -------------------------------------------------------------------

EDGE_INTS = (0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 32,
             2 ** 63 - 1, 2 ** 64 - 1, -(2 ** 63), -(2 ** 64), 2 ** 64, 2 ** 100, -(2 ** 100),
             10 ** 400, 2 ** 1100, -(2 ** 1100))
EDGE_FLOATS = (0.0, -0.0, 0.5, 1.0, 1e308, -1e308, 5e-324, float("inf"), float("-inf"),
               float("nan"), 65504.0, 3.4028234663852886e38)

ints = st.one_of(st.integers(-(2 ** 70), 2 ** 70), st.sampled_from(EDGE_INTS))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(EDGE_FLOATS))
texts = st.text(max_size=20)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=20))

# Tag numbers cbor2 gives meaning to, the protocol's command tags, and random ones.
TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 100, 256, 258, 260, 261, 1004, 55799,
        0x010000, 0x010100, 0x010200, 0x010300, 0x010400, 0x010500, 0x010600, 0x010700,
        0x010800, 0x010900, 0x011000)
tag_numbers = st.one_of(st.sampled_from(TAGS), st.integers(0, 2 ** 64 - 1))


def cbor_values(leaves=scalars, max_leaves=12):
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5),
            st.dictionaries(st.one_of(st.integers(-10, 10), texts, st.booleans()), inner, max_size=5),
            st.builds(cbor2.CBORTag, tag_numbers, inner),
        ),
        max_leaves=max_leaves,
    )


def dumps(obj, indefinite=False):
    """Encode with cbor2; values cbor2 refuses to encode become b''."""
    try:
        return cbor2.dumps(obj)
    except (cbor2.CBOREncodeError, ValueError, TypeError, OverflowError):
        return b""


# --- SenML records -----------------------------------------------------------------------

LABEL_KEYS = (-1, -2, -3, -4, -5, -6, 0, 1, 2, 3, 4, 5, 6, 7, 8, 123, "n", "v", "vs", "vb", "vd",
              "bn", "bt", "bv", "t", "u", "x")


def senml_records(names):
    """Lists of SenML-ish maps: real labels with values of any type, names from `names`."""
    # Edge numbers half the time: sums like bv + v and bt + t meet them often.
    numbers = st.one_of(st.sampled_from(EDGE_INTS + EDGE_FLOATS), ints, floats)
    label_value = st.one_of(
        st.tuples(st.just(0), st.one_of(st.sampled_from(names), texts)),
        st.tuples(st.just(2), st.one_of(numbers, st.booleans())),
        st.tuples(st.just(3), texts),
        st.tuples(st.just(4), st.one_of(st.booleans(), ints)),
        st.tuples(st.just(8), st.binary(max_size=8)),
        st.tuples(st.sampled_from((-5, -3, 6)), numbers),  # bv, bt, t: sums
        st.tuples(st.just(-2), st.one_of(st.sampled_from(names), texts)),  # bn
        st.tuples(st.sampled_from(LABEL_KEYS), scalars),
    )
    record = st.lists(label_value, min_size=1, max_size=5).map(dict)
    return st.lists(st.one_of(record, record, record, scalars), min_size=1, max_size=8)


def base_sums():
    """Packs whose records combine base fields with their own: bv + v, bt + t."""
    numbers = st.one_of(st.sampled_from(EDGE_INTS + EDGE_FLOATS), ints, floats)
    rec = st.fixed_dictionaries({0: st.sampled_from(("a", "b")), 2: numbers, 6: numbers},
                                optional={-5: numbers, -3: numbers})
    return st.lists(rec, min_size=1, max_size=4)


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def same_value(a, b):
    """Equality that treats NaN as equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
