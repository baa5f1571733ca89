"""The known Opus stream the realtime tests send: packets made once with PyAV's encoder.

``python -m tests.fakes.opus_data`` rewrites tests/data/opus_48k_20ms.bin (a 2-byte
big-endian length before each packet). The tests only read it, so every run sends the
same bytes and can compare them byte for byte at the other end.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

PATH = Path(__file__).resolve().parent.parent / "data" / "opus_48k_20ms.bin"


def load() -> list[bytes]:
    data = PATH.read_bytes()
    packets, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">H", data, at)
        packets.append(data[at + 2: at + 2 + size])
        at += 2 + size
    return packets


def generate(seconds: float = 4.0) -> list[bytes]:
    import array

    import av

    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48000
    codec.layout = "stereo"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.options = {"frame_duration": "20", "application": "voip"}
    samples = 960
    packets = []
    for index in range(int(seconds * 50)):
        pitch = 300 + (40 * index) % 900  # a rising, repeating chirp
        pcm = array.array("h")
        for n in range(samples):
            value = int(0.3 * 32767 * math.sin(2 * math.pi * pitch * (n + index * samples) / 48000.0))
            pcm.extend((value, value))
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate = 48000
        frame.pts = index * samples
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


if __name__ == "__main__":
    packets = generate()
    PATH.write_bytes(b"".join(struct.pack(">H", len(p)) + p for p in packets))
    print(f"{PATH}: {len(packets)} packets, {PATH.stat().st_size} bytes")
