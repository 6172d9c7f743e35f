"""Helpers shared by the atheris harnesses of this directory (plain scripts: run one as
``python tests/fuzz/fuzz_wire.py -runs=100000``; see docs/reliability.md).

A harness reads its whole input through :class:`atheris.FuzzedDataProvider`; the helpers
here turn the provider's bytes into JSON values and text with a bias towards the shapes
and characters that matter to axsync's parsers and codecs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

#: Characters that matter to the name codecs (separators, escapes, mUTF-7, look-alikes,
#: controls, non-BMP, a lone surrogate).
SPECIAL_CHARS = ".\\/&-~:,=%*\"(){} ]\t\r\n\0\u2215\u00e4\u65e5\U0001f600\ud800"


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Standard atheris entry point. ``-runs=N``, ``-seed=N``, ``-max_len=N`` and a corpus
    directory are passed through to libFuzzer."""
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


def text(fdp: Any, max_len: int = 40) -> str:
    """Mostly special characters and ASCII, sometimes any code point."""
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:
        return str(fdp.ConsumeUnicode(max_len))
    n = fdp.ConsumeIntInRange(0, max_len)
    out = []
    for _ in range(n):
        pick = fdp.ConsumeIntInRange(0, 9)
        if pick < 4:
            out.append(SPECIAL_CHARS[fdp.ConsumeIntInRange(0, len(SPECIAL_CHARS) - 1)])
        elif pick < 9:
            out.append(chr(fdp.ConsumeIntInRange(0x20, 0x7E)))
        else:
            out.append(chr(fdp.ConsumeIntInRange(0, 0x10FFFF)))
    return "".join(out)


def json_value(fdp: Any, depth: int = 0) -> object:
    """A value ``json.loads`` could produce (no NaN/Infinity), every JSON type."""
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**64), 2**64)
    if kind == 3:
        value = fdp.ConsumeRegularFloat()
        return value if value == value and abs(value) != float("inf") else 0.5
    if kind == 4:
        return str(fdp.ConsumeIntInRange(-(2**40), 2**40))  # numeric strings
    if kind in (5, 6):
        return text(fdp, 24)
    if kind == 7:
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {text(fdp, 8): json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}
