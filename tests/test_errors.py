"""errors.py: how an InterpscanError reads, whatever the user's value in it."""

from __future__ import annotations

from interpscan.errors import LONG_WORD, UsageError, opt


def test_a_huge_echoed_value_is_cut_to_a_readable_line() -> None:
    """A 120 KB --groups pattern was echoed whole (a 120 KB error line); now its middle is cut and its length
    said, in the library's words and the command line's alike."""
    pattern = "x" * 120_000
    exc = UsageError(f"{opt('groups')} pattern {pattern!r} matched no module or tensor", hint=f"not {pattern}")
    message, hint = exc.rendered({"groups": "--groups"})
    for line in (message, hint, exc.message, exc.hint):
        assert line is not None
        assert len(line) < 2 * LONG_WORD
        assert "(120,002 characters)" in line or "(120,000 characters)" in line
    assert message.startswith("--groups pattern 'xxx")
    assert message.endswith("matched no module or tensor")
    assert exc.message.startswith("groups pattern 'xxx")


def test_a_value_of_ordinary_length_is_shown_whole() -> None:
    path = "/data/" + "d" * (LONG_WORD - 10)
    assert UsageError(f"cannot read {path}").message == f"cannot read {path}"
