"""Pure-logic parts of the sandbox: codec, comparisons, signatures' normal forms, limits,
the seccomp program. No sandbox is started here."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prm_plugin.sandbox import Limits, canonical, doctest_inputs, functional_equal, stdio_equal
from prm_plugin.sandbox._child import codec, seccomp
from prm_plugin.sandbox.api import as_functional, as_stdio
from prm_plugin.sandbox.box import lost_layers, make_limits

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.integers() | st.text(max_size=3), inner, max_size=3)
    | st.frozensets(st.integers(), max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(plain)
def test_codec_round_trips_plain_values_with_exact_types(value: object) -> None:
    back = codec.loads(codec.dumps(value))
    assert back == value
    assert type(back) is type(value)


def test_codec_round_trips_the_awkward_ones() -> None:
    value = (2**200, -(2**70), float("inf"), float("-inf"), {1, 2}, {(1, "a"): b"\x00"}, 1 - 2j, [], ())
    assert codec.loads(codec.dumps(value)) == value
    assert math.isnan(codec.loads(codec.dumps(float("nan"))))


def test_codec_refuses_objects_that_could_fake_equality() -> None:
    class AlwaysEqual:
        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(codec.CodecError, match="AlwaysEqual cannot be compared"):
        codec.dumps(AlwaysEqual())
    with pytest.raises(codec.CodecError):
        codec.dumps([1, [AlwaysEqual()]])


def test_codec_turns_subclasses_into_plain_values_ignoring_their_dunders() -> None:
    class SneakyInt(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

        def __index__(self) -> int:
            return 999

    out = codec.loads(codec.dumps(SneakyInt(5)))
    assert out == 5 and type(out) is int
    assert out != 6  # the decoded value is a real int


def test_codec_refuses_cycles_and_malformed_frames() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(codec.CodecError, match="nested deeper"):
        codec.dumps(loop)
    for bad in ('{"t": "evil", "v": 1}', '{"passed": true}', '{"t": "dict", "v": [[[1], 2]]}', "[" * 10_000, "nope",
                '{"t": "bytes", "v": "***"}'):
        with pytest.raises(codec.CodecError):
            codec.loads(bad)


@pytest.mark.parametrize(
    ("out", "exp", "atol", "mode", "ok"),
    [
        (0.1 + 0.2, 0.3, 0, "evalplus", True),  # floats always get atol >= 1e-6
        (0.3001, 0.3, 0, "evalplus", False),
        (0.3001, 0.3, 1e-3, "evalplus", True),
        ([1.0, 2.0000001], [1.0, 2.0], 0, "evalplus", True),
        ((1.0, 2.0), [1.0, 2.0], 0, "evalplus", False),  # EvalPlus: type(out) must match
        (3, 3.0, 0, "evalplus", True),  # exact == first, as EvalPlus does
        (float("nan"), float("nan"), 1e-6, "evalplus", False),
        (float("inf"), float("inf"), 0, "evalplus", True),
        ([1, 2], [1, 2, 3], 1e-3, "evalplus", False),
        ("abc", "abc", 0, "evalplus", True),
        ((1, 2), [1, 2], 0, "lcb", True),  # LiveCodeBench turns tuples into lists
        (1, 1.0, 0, "exact", False),
    ],
)
def test_functional_equal_follows_evalplus_and_lcb(out: object, exp: object, atol: float, mode: str, ok: bool) -> None:
    assert functional_equal(out, exp, atol, mode) is ok  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("got", "want", "ok"),
    [
        ("1 2\n3\n", "1 2\n3", True),
        ("  1 2  \r\n3\n\n\n", "1 2\n3", True),
        ("1  2\n", "1 2\n", True),  # tokens compared as decimals
        ("0.50\n", "0.5\n", True),
        ("1.0000001\n", "1.0\n", False),  # Decimal, not float tolerance
        ("1\n\n2\n", "1\n2\n", False),  # an inner blank line is a line
        ("YES\n", "yes\n", False),
        ("", "", True),
        ("sNaN\n", "1\n", False),
    ],
)
def test_stdio_equal_follows_livecodebench(got: str, want: str, ok: bool) -> None:
    assert stdio_equal(got, want) is ok


def test_canonical_ignores_order_and_float_noise_only() -> None:
    assert canonical({1, 2, 3}) == canonical({3, 2, 1})
    assert canonical({"a": 1, "b": 2}) == canonical({"b": 2, "a": 1})
    assert canonical(0.1 + 0.2) == canonical(0.3)
    assert canonical(0.31) != canonical(0.3)
    assert canonical((1, 2)) != canonical([1, 2])
    assert json.dumps(canonical(True)) != json.dumps(canonical(1))  # the hash sees JSON


def test_doctest_inputs_reads_example_calls_from_a_humaneval_prompt() -> None:
    prompt = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    has_close_elements(numbers, 0.1)  -> not a literal call, skipped
    """
'''
    assert doctest_inputs(prompt, "has_close_elements") == [
        ([1.0, 2.0, 3.0], 0.5),
        ([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3),
    ]
    assert doctest_inputs("add(2, 3) ==> 5\nadd(')', 1)\nmy_add(1, 1)", "add") == [(2, 3), (")", 1)]


def test_limits_validate_with_fix_it_messages() -> None:
    assert Limits(timeout_s=2, wall_factor=3, wall_slack_s=0.5).wall_s == 6.5
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb must be an integer >= 64"):
        Limits(memory_mb=8)
    with pytest.raises(TypeError, match=r"unknown limit\(s\) \['timeout'\]"):
        make_limits(None, {"timeout": 3})
    assert make_limits(Limits(memory_mb=256), {"timeout_s": 1}) == Limits(timeout_s=1, memory_mb=256)


def test_test_cases_normalise_or_explain() -> None:
    assert as_functional({"input": [1, 2], "output": 3, "atol": 0.1}, 0).atol == 0.1
    assert as_functional(([1], 1), 0).args == (1,)
    with pytest.raises(ValueError, match="wrap a single argument as"):
        as_functional({"input": 5, "output": 5}, 3)
    with pytest.raises(ValueError, match="test 1: expected StdioTest"):
        as_stdio(["1", "2"], 1)
    with pytest.raises(ValueError, match="must both be str"):
        as_stdio({"input": 1, "output": "1"}, 0)


def test_lost_layers_names_what_the_basic_level_gives_up() -> None:
    assert lost_layers("root", {"landlock": 7, "seccomp": True, "proc": True, "nproc": True}) == []
    lost = " ".join(lost_layers("basic", {"landlock": 0, "seccomp": True, "nproc": False}))
    for word in ("pid namespace", "network namespace", "mount namespace", "landlock", "RLIMIT_NPROC"):
        assert word in lost


@pytest.mark.skipif(not seccomp.supported(), reason="no syscall table for this architecture")
def test_seccomp_program_is_well_formed_and_short_jumping() -> None:
    prog = seccomp.build_filter(deny_kill_all=True)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    assert len(raw) == 8 * len(prog) and len(prog) < 4096
    for pc, (code, jt, jf, _k) in enumerate(prog):
        if code & 0x07 == 0x05:  # BPF_JMP: both targets stay inside the program
            assert pc + 1 + max(jt, jf) < len(prog)
    assert prog[-1] == (0x06, 0, 0, 0x7FFF0000)  # default: allow
    denied = {k for code, _, _, k in prog if code == 0x15}
    assert 101 in denied or 117 in denied  # ptrace (x86_64 / aarch64)
