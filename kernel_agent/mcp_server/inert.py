"""Text for a client's screen: what a kernel printed, a file it wrote, what a tool source said, made inert.

All of it is hostile and reaches the client's model and often its user's terminal (Claude Code, a CLI
client): an escape sequence there could write the user's clipboard (OSC 52), clear the screen or retitle
the window, and a carriage return, backspaces or a bidi override hide or reorder text, so a cell could make
its output look like the server's own words. Every such character is shown as its escape instead: what was
sent stays visible, and does nothing.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), zero-width and bidi controls,
# line and paragraph separators, the byte-order mark, lone surrogates (undecodable bytes) and Unicode tag
# characters (invisible text a model still reads). Printable text, NBSP and other spaces included, is kept.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                       "\ufeff\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f]")


def inert(text: str) -> str:
    """``text`` with every control character (but newline and tab) shown as its escape (``\\x1b``, ``\\u202e``)."""
    return _CONTROLS.sub(lambda found: found.group().encode("unicode_escape", "backslashreplace").decode("ascii"),
                         text)
