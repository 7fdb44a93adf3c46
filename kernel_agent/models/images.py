"""Images in the conversation: the part an observation carries, its text placeholder, and what it costs in tokens.

The agent loop decides which images a cell showed are sent (see
:mod:`kernel_agent.agent.images`); each adapter writes the parts it is given
in its provider's own format. Bytes here are already checked: base64 that
decodes, PNG or JPEG magic, dimensions read from the image's own header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The image types sent to models: both providers accept them, and IPython displays plots as PNG.
SENT_MEDIA_TYPES = ("image/png", "image/jpeg")


@dataclass(frozen=True)
class ImagePart:
    """One image sent to the model with an observation: base64 bytes, their type and size in pixels."""

    media_type: str
    data: str = field(repr=False)  # base64 of the image bytes (validated, no whitespace)
    width: int
    height: int
    output_index: int = 0  # which output of the cell showed it (0-based)

    @property
    def byte_size(self) -> int:
        """The decoded size in bytes (from the base64 length)."""
        return len(self.data) * 3 // 4 - self.data[-2:].count("=")

    @property
    def placeholder(self) -> str:
        """How the image appears in text transcripts (logs, token counts, ``conversation_as_text``)."""
        kind = self.media_type.removeprefix("image/").upper()
        return f"[image: {kind} {self.width}x{self.height}, {self.byte_size:,} bytes]"

    @property
    def data_url(self) -> str:
        """The image as a ``data:`` URL (how OpenAI's Chat Completions API takes inline images)."""
        return f"data:{self.media_type};base64,{self.data}"


def no_vision_note(image: ImagePart, model: str) -> str:
    """What a model without image input reads instead of an image it was not sent."""
    return (f"[{image.placeholder[1:-1]} not sent: {model} takes no image input (vision is off); "
            "it is in the notebook]")


def anthropic_image_tokens(width: int, height: int) -> int:
    """Anthropic's documented estimate: about width * height / 750 tokens (after its own resize to 1568 px)."""
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return math.ceil(int(width * scale) * int(height * scale) / 750)


def openai_image_tokens(width: int, height: int, *, detail: str = "high") -> int:
    """OpenAI's tile formula (GPT-4o, GPT-4.1, o-series): 85 + 170 per 512 px tile after its resizes.

    High detail: fit in 2048 x 2048, then scale the short side down to 768;
    low detail: 85 tokens whatever the size.
    """
    if detail == "low":
        return 85
    fit = min(1.0, 2048 / max(width, height))
    short = min(1.0, 768 / (min(width, height) * fit))
    scaled_width, scaled_height = width * fit * short, height * fit * short
    return 85 + 170 * math.ceil(scaled_width / 512) * math.ceil(scaled_height / 512)
