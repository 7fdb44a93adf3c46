"""Text from a kernel or a model, made safe to print on the user's terminal (terminal_safe).

Kernel output (and a model's text, which kernel output can steer) is hostile:
printed as it is, escape sequences could move the cursor and overwrite what
the user sees, set the window title, write the clipboard (OSC 52), make
links or query the terminal. Everything but text, newlines and tabs goes:
every ESC-introduced sequence and its payload, the C1 controls (U+0080 to
U+009F, which some terminals take as ESC + a letter), the other C0 controls,
and the bidirectional controls that reorder what is shown. A carriage
return starts a new line (it cannot overwrite the line before). A lone
surrogate (JSON's ``\\ud800`` decodes to one) becomes U+FFFD: written to a
UTF-8 terminal it would raise UnicodeEncodeError and end the run. Each piece
is cleaned on its own: with no ESC and no C1 left, nothing in a piece can
join one in the next to form a sequence.
"""

from __future__ import annotations

import re

# ESC sequences: CSI (ESC [ ... final), strings (OSC ESC ], DCS ESC P, SOS ESC X, PM ESC ^, APC ESC _) up to
# their terminator (BEL or ST) or the end of their line (an unterminated one must not swallow the lines after it:
# the host's own notes follow the kernel's output in one text), and the short ones (ESC, intermediates, final).
# The C1 forms of CSI and of the string introducers, likewise.
_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\n]*?(?:\x07|\x1b\\|\x9c|(?=\n)|\Z)"
    r"|\x1b[ -/]*[0-~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|[\x90\x98\x9d\x9e\x9f][^\n]*?(?:\x07|\x1b\\|\x9c|(?=\n)|\Z)",
)
# What is left of the controls (tab and newline stay), and the bidirectional marks, embeddings, overrides and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Code points no encoder takes: in a str they can only be lone surrogates (a JSON pair decodes to one code point).
_SURROGATE = re.compile("[\ud800-\udfff]")


def terminal_safe(text: str) -> str:
    """``text`` with every terminal control sequence and control character removed (``\\r`` becomes ``\\n``)."""
    text = _SEQUENCE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))
