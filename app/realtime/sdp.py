"""Checking a client's SDP offer before aiortc sees it.

aiortc accepts almost any text as an offer (a garbage SDP once got a 201), so the gateway
checks what it needs first: an audio section, ICE credentials and a DTLS fingerprint.
The checks are line-based (RFC 8866 attribute lines), no SDP library involved.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.errors import bad_request

MAX_SDP_BYTES = 64 * 1024


@dataclass(frozen=True)
class Offer:
    sdp: str
    audio_sections: int
    audio_opus: tuple[bool, ...]  # per audio section: does it offer Opus?
    has_data_channel: bool

    @property
    def opus(self) -> bool:
        return all(self.audio_opus)


def check_offer(sdp: str) -> Offer:
    """The parsed facts of a usable offer, or a 400 that says what is missing."""
    if not sdp or not sdp.strip():
        raise bad_request("sdp is empty", param="sdp")
    if len(sdp) > MAX_SDP_BYTES:
        raise bad_request(f"sdp is larger than {MAX_SDP_BYTES} bytes", param="sdp")
    lines = [line.strip() for line in sdp.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v=0"):
        raise bad_request("sdp is not an SDP offer (it must start with v=0)", param="sdp")
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    audio = [s for s in sections if s[0].startswith("m=audio ")]
    if not audio:
        raise bad_request("sdp has no audio section (m=audio)", param="sdp")
    for section in sections:
        if section[0].split(" ")[1:2] == ["0"]:  # a rejected section needs no transport
            continue
        attrs = session + section
        for name, what in (("a=ice-ufrag:", "ICE username fragment (a=ice-ufrag)"),
                           ("a=ice-pwd:", "ICE password (a=ice-pwd)"),
                           ("a=fingerprint:", "DTLS fingerprint (a=fingerprint)")):
            if not any(a.startswith(name) and len(a) > len(name) for a in attrs):
                kind = section[0][2:].split(" ")[0]
                raise bad_request(f"sdp {kind} section has no {what}", param="sdp")
    if any(line.startswith("a=setup:passive") for line in session):
        raise bad_request("sdp is an answer, not an offer (a=setup:passive)", param="sdp")
    opus = tuple(
        any(a.startswith("a=rtpmap:") and a.split(" ", 1)[-1].lower().startswith("opus/48000") for a in s)
        for s in audio
    )
    return Offer(
        sdp=sdp if sdp.endswith("\n") else sdp + "\r\n",
        audio_sections=len(audio),
        audio_opus=opus,
        has_data_channel=any(s[0].startswith("m=application ") for s in sections),
    )
