"""Runs tests/realtime_netns (the WebRTC tests) inside a network namespace with only loopback.

aioice offers every interface address except 127.0.0.1, so on a normal host the peers would
pair over the machine's real interfaces. In a fresh namespace (``unshare -n``, root) lo is the
only interface; with 127.0.0.2 added, every peer offers a loopback-only candidate. The
namespace disappears with its last process; the inner pytest stops every gateway it starts.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SETUP = "ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec \"$@\""


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None


@pytest.mark.integration
@pytest.mark.timeout(660)  # the whole inner suite (about 45 s here); each inner test has its own timeout
@pytest.mark.skipif(not _can_unshare() and not os.environ.get("CI"), reason="needs root, unshare and ip")
def test_webrtc_suite_in_a_loopback_only_namespace(tmp_path, capsys):
    junit, report = tmp_path / "webrtc.xml", tmp_path / "figures.jsonl"
    env = {**os.environ, "BIFROST_IN_NETNS": "1", "BIFROST_RT_REPORT": str(report)}
    command = ["unshare", "-n", "sh", "-c", SETUP, "sh", sys.executable, "-m", "pytest", "tests/realtime_netns",
               "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "-o", "addopts="]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, text=True)
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the WebRTC suite did not finish in 600 s:\n{output[-4000:]}")
    results = []
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else (
                "skipped" if case.find("skipped") is not None else "passed")
            results.append((case.get("name"), outcome))
    with capsys.disabled():
        print(f"\n  WebRTC suite in a loopback-only namespace: {len(results)} test(s)")
        for name, outcome in results:
            print(f"    {outcome:7} {name}")
        if report.exists():
            for line in report.read_text().splitlines():
                print("    figures:", json.dumps(json.loads(line)))
    assert process.returncode == 0, output[-6000:]
    # a skip is allowed only where the inner test says why (the browser example without Chromium)
    assert results and all(outcome in ("passed", "skipped") for _, outcome in results), output[-6000:]
    assert sum(outcome == "passed" for _, outcome in results) >= len(results) - 1, output[-6000:]
