"""Reading an SSE stream: our line loop against `httpx-sse`, on the same streamed bodies.

The providers read `data:` lines from `httpx`'s `aiter_lines` (DESIGN: no SSE dependency). This
measures what `httpx-sse` (if installed: `pip install httpx-sse`) would cost instead, for a short
and a long chat-completions stream served in network-sized chunks by an in-process transport, so
only the reading differs. Both sides decode each event's JSON, as the providers do.

    python bench/sse_reading.py [--streams 400]
"""

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import msgspec

CHUNK_BYTES = 1400  # about one TCP segment
ROUNDS = 4
Reader = Callable[[httpx.Response], Awaitable[int]]


def body(chunks: int) -> bytes:
    """A chat-completions stream of `chunks` text deltas, a usage chunk and `[DONE]`."""
    lines = []
    for n in range(chunks):
        delta = {"choices": [{"index": 0, "delta": {"content": f"word{n} "}}], "usage": None}
        lines.append(b"data: " + msgspec.json.encode(delta) + b"\n\n")
    usage = {"choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": chunks}}
    lines.append(b"data: " + msgspec.json.encode(usage) + b"\n\ndata: [DONE]\n\n")
    return b"".join(lines)


class Chunked(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), CHUNK_BYTES):
            yield self.data[start : start + CHUNK_BYTES]


async def ours(response: httpx.Response) -> int:
    """The providers' loop (`providers/openai_chat.py`)."""
    events = 0
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            break
        msgspec.json.decode(data)
        events += 1
    return events


async def httpx_sse(response: httpx.Response) -> int:
    from httpx_sse import EventSource  # type: ignore[import-not-found]  # optional, compared only

    events = 0
    async for event in EventSource(response).aiter_sse():
        if event.data == "[DONE]":
            break
        msgspec.json.decode(event.data)
        events += 1
    return events


async def timed(read: Reader, data: bytes, streams: int) -> list[float]:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=Chunked(data)
        )

    times = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        for _ in range(streams):
            started = time.perf_counter()
            async with client.stream("POST", "http://provider.test/v1/chat/completions") as got:
                await read(got)
            times.append(time.perf_counter() - started)
    return times


async def main(args: argparse.Namespace) -> None:
    readers: dict[str, Reader] = {"our line loop": ours}
    if importlib.util.find_spec("httpx_sse") is not None:
        readers["httpx-sse"] = httpx_sse
    else:
        print("httpx-sse is not installed: only our loop is measured (pip install httpx-sse)")
    for chunks in (40, 400):
        data = body(chunks)
        print(f"a stream of {chunks} deltas ({len(data):,} bytes), {args.streams} streams each:")
        times: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(ROUNDS):  # alternating, so neither gains from going second
            for name, read in readers.items():
                await timed(read, data, 20)  # warm up
                times[name] += await timed(read, data, args.streams // ROUNDS)
        for name, taken in times.items():
            print(f"  {name:<14} median {1e6 * statistics.median(taken):8.0f} µs per stream")
    if "httpx-sse" in readers:
        spec = importlib.util.find_spec("httpx_sse")
        assert spec is not None
        assert spec.origin is not None
        package = Path(spec.origin).parent
        size = sum(path.stat().st_size for path in package.rglob("*.py"))
        print(f"httpx-sse source: {size:,} bytes of Python; ours: a dozen lines per provider")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
