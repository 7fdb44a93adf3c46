"""Plots the model sees: images a cell shows reach the model's next request, in each provider's own format.

One real sandboxed session (matplotlib in the kernel) serves every test of the module; the providers are the
real SDK clients with only their HTTP transport faked, so the assertions are on the JSON body each SDK sent.
Hostile images are made by the kernel itself (raw display_data with crafted bytes).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from kernel_agent import Agent, ScriptedModel, Session, StopReason
from kernel_agent.agent.images import ImageLimits, images_of_record, newest_images_only
from kernel_agent.models.anthropic import AnthropicModel
from kernel_agent.models.base import Observation, ObservationTurn, Turn, UserTurn
from kernel_agent.models.images import ImagePart, anthropic_image_tokens, openai_image_tokens
from kernel_agent.models.openai import OpenAIModel
from tests.models.fake_providers import (
    FakeProvider,
    anthropic_message,
    openai_completion,
    openai_error,
    openai_tool_call,
    text_block,
    tool_use_block,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLOT = ("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9, 16])\nplt.title('squares')\nplt.show()")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Session]:
    """One recorded sandboxed session for the module: each test runs an agent in it."""
    root = tmp_path_factory.mktemp("images")
    workspace = root / "workspace"
    workspace.mkdir()
    async with Session(workspace, notebook=root / "run.ipynb", default_timeout=120) as session:
        yield session


def png_of(part: dict[str, Any] | str) -> tuple[str, int, int]:
    """(format, width, height) of base64 image data, decoded on the host by Pillow."""
    data = part if isinstance(part, str) else part["data"]
    with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
        return str(image.format), image.size[0], image.size[1]


def shown_png(result: Any, step: int = 0) -> tuple[str, int, int]:
    """The PNG the step's cell displayed, as the kernel sent it (the inline backend crops figures tightly)."""
    [output] = [o for o in result.steps[step].executions[0].cell.outputs if "image/png" in o.get("data", {})]
    return png_of(output["data"]["image/png"])


def recorded_code_cells(session: Session) -> list[dict[str, Any]]:
    assert session.notebook is not None
    cells = json.loads(session.notebook.read_text())["cells"]
    return [cell for cell in cells if cell["metadata"]["kernel_agent"].get("kind") == "code"]


def crafted(mime: str, raw: bytes | str) -> str:
    """Code with which the kernel shows bytes of its choosing under an image type (a model's code could)."""
    data = raw if isinstance(raw, str) else base64.b64encode(raw).decode()
    return f"from IPython.display import display\ndisplay({{{mime!r}: {data!r}, 'text/plain': 'crafted'}}, raw=True)"


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming a size, with no image data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


# -- Anthropic ------------------------------------------------------------------------------------


async def test_a_plot_reaches_claude_as_an_image_block_in_the_tool_result(shared: Session) -> None:
    fake = FakeProvider(anthropic_message(text_block("Plotting."), tool_use_block(PLOT, id="toolu_plot")),
                        anthropic_message(text_block("The curve rises quadratically.")))
    agent = Agent(AnthropicModel("claude-test", client=fake.anthropic_client()), max_steps=3)
    result = await agent.run("Plot the squares and describe the curve.", session=shared)
    await agent.close()
    assert result.stop_reason is StopReason.ANSWERED, result.error

    # The second request carries the figure inside the tool_result, after the observation's text.
    [tool_result] = fake.bodies[1]["messages"][-1]["content"]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == "toolu_plot"
    text, image = tool_result["content"]
    _, width, height = shown_png(result)
    assert "<Figure size 640x480 with 1 Axes>" in text["text"]
    assert f"image 1 (output 1 of the cell, image/png), {width}x{height}: attached as an image" in text["text"]
    assert image["type"] == "image" and image["source"]["type"] == "base64"
    assert image["source"]["media_type"] == "image/png"
    assert png_of(image["source"]) == ("PNG", width, height)

    # The record names the output sent as an image (no bytes twice); the text transcript has a placeholder.
    observation = recorded_code_cells(shared)[-1]["metadata"]["kernel_agent"]["observation"]
    [entry] = observation["images"]
    assert entry == {"output": 0, "media_type": "image/png", "width": width, "height": height, "sent": True,
                     "sent_media_type": "image/png", "sent_width": width, "sent_height": height,
                     "sent_bytes": len(base64.b64decode(image["source"]["data"]))}
    assert image["source"]["data"] not in json.dumps(observation)
    assert f"[image: PNG {width}x{height}" in result.conversation[-2]["content"]
    assert result.steps[0].images_sent == 1


async def test_two_cells_of_one_step_share_the_steps_image_limit(shared: Session) -> None:
    fake = FakeProvider(anthropic_message(tool_use_block(PLOT, id="toolu_a"), tool_use_block(PLOT, id="toolu_b")),
                        anthropic_message(text_block("done")))
    agent = Agent(AnthropicModel("claude-test", client=fake.anthropic_client()), max_steps=3,
                  image_limits=ImageLimits(max_images=1))
    await agent.run("Plot twice.", session=shared)
    await agent.close()
    first, second = fake.bodies[1]["messages"][-1]["content"]
    assert [block["type"] for block in first["content"]] == ["text", "image"]
    assert [block["type"] for block in second["content"]] == ["text"]
    assert "was not sent to you: the limit of 1 images per step was reached" in second["content"][0]["text"]


async def test_claude_without_vision_gets_a_note(shared: Session) -> None:
    fake = FakeProvider(anthropic_message(tool_use_block(PLOT, id="toolu_plot")), anthropic_message(text_block("ok")))
    agent = Agent(AnthropicModel("claude-test", client=fake.anthropic_client(), vision=False), max_steps=3)
    result = await agent.run("Plot.", session=shared)
    await agent.close()
    [tool_result] = fake.bodies[1]["messages"][-1]["content"]
    assert [block["type"] for block in tool_result["content"]] == ["text"]
    _, width, height = shown_png(result)
    assert f"{width}x{height} was not sent to you: anthropic:claude-test takes no image input (vision is off)" in (
        tool_result["content"][0]["text"])


# -- OpenAI ----------------------------------------------------------------------------------------


async def test_a_plot_reaches_openai_as_a_user_message_of_image_url_parts(shared: Session) -> None:
    fake = FakeProvider(openai_completion(None, openai_tool_call(PLOT, id="call_plot")),
                        openai_completion("The curve rises quadratically."))
    agent = Agent(OpenAIModel("gpt-test", client=fake.openai_client()), max_steps=3)
    result = await agent.run("Plot the squares.", session=shared)
    await agent.close()
    assert result.stop_reason is StopReason.ANSWERED, result.error

    # Tool messages carry text only: the image follows them as a user message tied to the call by its text.
    *_, tool, user = fake.bodies[1]["messages"]
    _, width, height = shown_png(result)
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_plot"
    assert f"{width}x{height}: attached as an image" in tool["content"]
    assert user["role"] == "user"
    label, image = user["content"]
    assert label == {"type": "text", "text": "Image 1 of 1 shown by the cell of call call_plot (its output 1):"}
    assert image["type"] == "image_url"
    prefix, _, data = image["image_url"]["url"].partition(",")
    assert prefix == "data:image/png;base64"
    assert png_of(data) == ("PNG", width, height)


async def test_a_local_server_gets_a_note_unless_told_it_has_vision(shared: Session) -> None:
    fake = FakeProvider(openai_completion(None, openai_tool_call(PLOT, id="call_plot")), openai_completion("ok"))
    local = OpenAIModel("qwen-local", base_url="http://127.0.0.1:8000/v1",
                        client=fake.openai_client(base_url="http://127.0.0.1:8000/v1"))
    assert local.vision is False
    agent = Agent(local, max_steps=3)
    await agent.run("Plot.", session=shared)
    await agent.close()
    *_, tool = fake.bodies[1]["messages"]
    assert tool["role"] == "tool" and "takes no image input (vision is off)" in tool["content"]
    assert OpenAIModel("llava", base_url="http://127.0.0.1:8000/v1", vision=True).vision is True


async def test_a_server_that_refuses_images_is_asked_again_with_notes(shared: Session) -> None:
    fake = FakeProvider(
        openai_completion(None, openai_tool_call(PLOT, id="call_plot")),
        openai_error(400, "Image input is not supported for this model.", "invalid_request_error"),
        openai_completion("ok"))
    model = OpenAIModel("text-only", base_url="http://127.0.0.1:8000/v1", vision=True,
                        client=fake.openai_client(base_url="http://127.0.0.1:8000/v1"))
    agent = Agent(model, max_steps=3)
    result = await agent.run("Plot.", session=shared)
    await agent.close()
    assert result.stop_reason is StopReason.ANSWERED, result.error
    refused, retried = fake.bodies[1:]
    assert refused["messages"][-1]["content"][1]["type"] == "image_url"
    assert retried["messages"][-1]["role"] == "tool" and "vision is off" in retried["messages"][-1]["content"]
    assert model.vision is False


# -- the scripted model, limits and hostile images -------------------------------------------------


async def test_the_scripted_model_sees_the_parts_and_large_images_are_downscaled(shared: Session) -> None:
    big = ("import matplotlib.pyplot as plt\nfig = plt.figure(figsize=(30, 20), dpi=100)\nplt.plot([1, 2])\n"
           "plt.show()")
    model = ScriptedModel([PLOT, big, {"text": "done"}])
    agent = Agent(model, max_steps=4)
    result = await agent.run("Plot small and big.", session=shared)
    first = model.seen[1][-1].observations[0].images  # type: ignore[union-attr]
    assert [(i.media_type, i.width, i.height) for i in first] == [("image/png", *shown_png(result)[1:])]
    [scaled] = model.images_seen[1:]
    limits = ImageLimits()
    assert scaled.width * scaled.height <= limits.max_pixels and max(scaled.width, scaled.height) <= limits.max_edge
    assert png_of(scaled.data)[1:] == (scaled.width, scaled.height)
    _, width, height = shown_png(result, step=1)
    assert width * height > limits.max_pixels
    assert f"{scaled.width}x{scaled.height}: attached as an image (downscaled from {width}x{height}" in (
        result.steps[1].observation)


async def test_the_images_sent_can_be_rebuilt_from_the_recording(shared: Session) -> None:
    """What a resumed run needs: the recorded cells' outputs and observation give back the very images sent."""
    big = "import matplotlib.pyplot as plt\nplt.figure(figsize=(30, 20), dpi=100)\nplt.plot([1, 2])\nplt.show()"
    model = ScriptedModel([PLOT, big, {"text": "done"}])
    await Agent(model, max_steps=4).run("Plot.", session=shared)
    rebuilt = []
    for cell in recorded_code_cells(shared)[-2:]:
        record = cell["metadata"]["kernel_agent"]["observation"]["images"]
        rebuilt += images_of_record(cell["outputs"], record, ImageLimits())
    assert [(i.data, i.width, i.height) for i in rebuilt] == [(i.data, i.width, i.height) for i in model.images_seen]
    # A tampered record cannot make anything else an image: only outputs marked sent, checked again.
    cell = recorded_code_cells(shared)[-1]
    forged = [{"output": 0, "sent": True}, {"output": 99, "sent": True}, "junk", {"output": "0", "sent": True}]
    assert len(images_of_record(cell["outputs"], forged, ImageLimits())) == 1
    assert images_of_record([{"output_type": "display_data", "data": {"image/png": "AAAA"}}], forged,
                            ImageLimits()) == ()


async def test_only_the_newest_images_stay_attached_to_the_conversation(shared: Session) -> None:
    model = ScriptedModel([PLOT, PLOT, PLOT, {"text": "done"}])
    result = await Agent(model, max_steps=5, image_limits=ImageLimits(max_in_conversation=2)).run(
        "Plot three times.", session=shared)
    attached = [[len(o.images) for t in seen if isinstance(t, ObservationTurn) for o in t.observations]
                for seen in model.seen]
    assert attached == [[], [1], [1, 1], [0, 0, 1]]  # over 2: let go in blocks of 1, the oldest first
    first = model.seen[3][2].observations[0]  # type: ignore[union-attr]
    assert "1 image(s) of this cell are no longer attached: only the newest 2 images stay" in first.text
    assert "no longer attached" not in result.steps[0].observation  # the record keeps what was sent then

    def turns(*counts: int) -> list[Turn]:
        image = ImagePart("image/png", "AAAA", 1, 1)
        return [UserTurn("task"), *(ObservationTurn((Observation(f"c{i}", "out", images=(image,) * n),))
                                    for i, n in enumerate(counts))]

    def kept(conversation: list[Turn]) -> list[int]:
        return [len(t.observations[0].images) for t in conversation if isinstance(t, ObservationTurn)]

    assert kept(newest_images_only(turns(4, 4, 4, 4, 4), 20)) == [4, 4, 4, 4, 4]
    # 24 images, limit 20, blocks of 10: 10 let go (14 kept); at 29 still 10; at 30, 20 let go.
    assert kept(newest_images_only(turns(4, 4, 4, 4, 4, 4), 20)) == [0, 0, 2, 4, 4, 4]
    assert kept(newest_images_only(turns(4, 4, 4, 4, 4, 4, 4, 1), 20)) == [0, 0, 2, 4, 4, 4, 4, 1]
    assert kept(newest_images_only(turns(4, 4, 4, 4, 4, 4, 4, 2), 20)) == [0, 0, 0, 0, 0, 4, 4, 2]


async def test_the_scripted_model_without_vision_gets_notes(shared: Session) -> None:
    model = ScriptedModel([PLOT, {"text": "done"}], vision=False)
    result = await Agent(model, max_steps=3).run("Plot.", session=shared)
    assert model.images_seen == []
    assert "scripted:inline takes no image input (vision is off)" in result.steps[0].observation


async def test_too_many_images_in_one_cell_leave_notes(shared: Session) -> None:
    many = ("import matplotlib.pyplot as plt\nfor k in range(6):\n    plt.figure(figsize=(2, 2))\n"
            "    plt.plot([0, k])\n    plt.show()")
    model = ScriptedModel([many, {"text": "done"}])
    result = await Agent(model, max_steps=3, image_limits=ImageLimits(max_images=4)).run("Six.", session=shared)
    assert len(model.images_seen) == 4
    assert result.steps[0].observation.count("the limit of 4 images per step was reached") == 2
    assert [e["sent"] for e in result.steps[0].executions[0].image_record] == [True] * 4 + [False] * 2


HOSTILE = [
    (crafted("image/png", "%%% not base64 %%%"), "its data is not valid base64"),
    (crafted("image/png", b"GIF89a" + bytes(64)), "its bytes are not a PNG image"),
    (crafted("image/jpeg", b"\xff\xd8\xff\xe0" + bytes(8)), "its JPEG header has no frame size"),
    (crafted("image/png", png_header(0, 10)), "its header gives an impossible size (0x10)"),
    (crafted("image/png", png_header(60_000, 60_000)), "too large to downscale"),
    (crafted("image/png", png_header(32, 32)), "it does not decode as an image"),
    (crafted("image/svg+xml", "<svg/>"), "only image/png and image/jpeg are sent to models"),
    ("from IPython.display import display\ndisplay({'image/png': 12345, 'text/plain': 'x'}, raw=True)",
     "its data is not base64 text"),
]


@pytest.mark.parametrize(("code", "reason"), HOSTILE, ids=[reason for _, reason in HOSTILE])
async def test_hostile_image_bytes_give_a_note_not_a_crash(shared: Session, code: str, reason: str) -> None:
    model = ScriptedModel([code, {"text": "done"}])
    result = await Agent(model, max_steps=3).run("Show it.", session=shared)
    assert result.stop_reason is StopReason.ANSWERED, result.error
    assert model.images_seen == []
    assert "was not sent to you: " in result.steps[0].observation and reason in result.steps[0].observation
    [entry] = recorded_code_cells(shared)[-1]["metadata"]["kernel_agent"]["observation"]["images"]
    assert entry["sent"] is False and reason in entry["reason"]


async def test_the_size_comes_from_the_image_not_the_kernels_metadata(shared: Session) -> None:
    # A JPEG the kernel made, displayed with metadata claiming it is tiny: the header says 3000x2000.
    code = ("import io\nfrom PIL import Image as I\nfrom IPython.display import Image, display\nb = io.BytesIO()\n"
            "I.new('RGB', (3000, 2000), 'navy').save(b, 'JPEG')\n"
            "display(Image(b.getvalue(), format='jpeg', width=10, height=10))")
    model = ScriptedModel([code, {"text": "done"}])
    await Agent(model, max_steps=3).run("Show it.", session=shared)
    [image] = model.images_seen
    assert image.media_type in ("image/png", "image/jpeg")
    assert image.width * image.height <= ImageLimits().max_pixels
    assert image.width / image.height == pytest.approx(1.5, rel=0.01)


async def test_without_pillow_a_large_image_is_left_out_with_the_reason(shared: Session,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` raises ImportError
    big = "import matplotlib.pyplot as plt\nplt.figure(figsize=(30, 20), dpi=100)\nplt.plot([1, 2])\nplt.show()"
    model = ScriptedModel([PLOT, big, {"text": "done"}])
    result = await Agent(model, max_steps=4).run("Plot.", session=shared)
    assert [(i.width, i.height) for i in model.images_seen] == [shown_png(result)[1:]]  # within the limits: as it is
    assert "Pillow is not installed to downscale it" in result.steps[1].observation


async def test_token_estimates_follow_the_providers_documented_formulas() -> None:
    assert anthropic_image_tokens(1000, 1000) == 1334  # Anthropic's table: 1000x1000 is about 1334 tokens
    assert openai_image_tokens(1024, 1024) == 765      # OpenAI's worked example: 4 tiles
    assert openai_image_tokens(2048, 4096) == 1105     # 768x1536 after the two resizes: 6 tiles
    assert openai_image_tokens(4096, 8192, detail="low") == 85
    part = ImagePart("image/png", base64.b64encode(b"x" * 10).decode(), 3, 2)
    assert part.byte_size == 10 and part.placeholder == "[image: PNG 3x2, 10 bytes]"


async def test_an_unrecorded_run_sends_the_image_too() -> None:
    # Without a recorder the session never calls record_extras: the loop observes after the cell.
    model = ScriptedModel([PLOT, {"text": "done"}])
    result = await Agent(model, notebook=False, max_steps=3).run("Plot.")
    assert [(i.media_type, i.width, i.height) for i in model.images_seen] == [("image/png", *shown_png(result)[1:])]


async def test_kernel_agent_run_vision_flag_sends_a_local_servers_model_the_plot(tmp_path: Path) -> None:
    """`kernel-agent run --vision` (a subprocess) for a vision model on a local server; the notebook stays intact."""
    from tests.cli.test_run import assert_intact, kernel_agent

    fake = FakeProvider(openai_completion(None, openai_tool_call(PLOT, id="call_plot")), openai_completion("ok"))
    with fake.serve() as url:
        run = await asyncio.to_thread(kernel_agent, "run", "Plot.", "--model", f"openai:qwen-vl@{url}/v1", "--vision",
                                      "--notebook", "run.ipynb", cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    *_, tool, user = fake.bodies[1]["messages"]
    assert tool["tool_call_id"] == "call_plot" and user["content"][1]["image_url"]["url"].startswith("data:image/png")
    assert_intact(tmp_path / "run.ipynb", tmp_path)
