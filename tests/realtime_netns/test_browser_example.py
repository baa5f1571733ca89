"""The README's browser example, run as written in headless Chromium (skipped where Chromium is absent).

The page is cut out of README.md, pointed at the gateway, and clicked: a fake microphone talks
through the gateway to the fake provider, the page asks for a response on oai-events, and hangs
up. The gateway's call summary must show audio both ways, one turn and the client's hangup.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.realtime_netns.conftest import post, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
README = Path(__file__).resolve().parent.parent.parent / "README.md"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_readme_browser_example_in_chromium(gateway, provider, tmp_path):
    page = re.search(r"```html\n(.*?)```", README.read_text(), re.S).group(1)
    page = page.replace('"https://gateway.example.com"', json.dumps(gateway.url))
    page += ("<script>document.querySelector('#talk').click();"
             "setTimeout(() => document.querySelector('#stop').click(), 4000);</script>")

    class Site(BaseHTTPRequestHandler):  # the application's own server: the page and its token endpoint
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            status, _, reply = post(gateway.url + "/v1/realtime/client_secrets",
                                    json.dumps({"session": {"model": "openai/gpt-realtime"}}).encode(),
                                    {"Content-Type": "application/json"})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    site = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    before = set(provider.calls)
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
         f"--user-data-dir={tmp_path / 'profile'}", "--remote-debugging-port=0",
         f"http://127.0.0.1:{site.server_address[1]}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lines = wait_for(lambda: [l for l in gateway.log().splitlines()
                                  if "realtime call summary" in l and any(f'"{k}"' in l for k in
                                                                          set(provider.calls) - before)], 25)
    finally:
        browser.kill()
        browser.wait()
        site.shutdown()
    assert lines, gateway.log()[-3000:]
    summary = json.loads(lines[-1].split("realtime call summary ", 1)[1])
    assert summary["passthrough"] is True
    assert summary["rtp_to_upstream"] > 100 and summary["rtp_to_client"] > 100
    assert summary["turns"] == 1 and summary["dc_to_upstream"] >= 1
    assert summary["reason"] in ("client hangup", "client closed")
