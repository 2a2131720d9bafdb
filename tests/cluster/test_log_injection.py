"""A key with CR/LF and NUL, sent through a real node, forges no line in its text log
(issue 23, part 5: "CR/LF and NUL bytes in keys reach the text log raw and forge log lines")."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from dfsring.cli.launcher import NodeProcess
from dfsring.testing.wait import wait_until

FORGED = "dfsring.node: FORGED node ready"
KEY = "k%0D%0A2026-01-01T00:00:00.000Z%20INFO%20%20%20%20" + FORGED.replace(" ", "%20") + "%00"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
FORGED_RECORD = re.compile(r"^\S+ INFO +" + re.escape(FORGED))


def _put(url: str, headers: dict[str, str]) -> str:
    req = urllib.request.Request(url, data=b"v", method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return str(resp.headers["Dfs-Request-Id"])
    except urllib.error.HTTPError as err:
        return str(err.headers["Dfs-Request-Id"])


def test_crlf_and_nul_in_a_key_forge_no_text_log_line(node1: NodeProcess) -> None:
    rid = _put(f"{node1.url}/v1/kv/b/{KEY}", node1.auth_headers)
    wait_until(lambda: rid in node1.log_path.read_text(errors="replace"), timeout=5,
               message="the request with the hostile key to reach the log")
    # A key the node accepts (a newline is a legal key character) may not be logged at all;
    # one it refuses (NUL) is. Either way, no line may start a record it did not write.
    text = node1.log_path.read_text(errors="replace")
    lines = text.split("\n")
    forged = [ln for ln in lines if RECORD_START.match(ln) and FORGED_RECORD.match(ln)]
    assert not forged
    assert [ln for ln in lines if rid in ln and FORGED in ln]  # escaped, on the request's line
    assert "\x00" not in text
