"""The web console in a real headless Chromium (Debian's) against a real 3-node cluster with
auth on (issue 20, "Must show").

One scenario in steps, in file order, sharing one cluster and one logged-in page (a browser
suite that restarts everything per step would not fit its four minutes on two cores): log in,
create a bucket, drop three files (one of 50 MiB) and watch their progress complete, download
one and compare its SHA-256, overwrite and restore, delete, resolve a sibling, a read-only key
that sees no upload control and is refused by the server, axe-core on every page, and last a
killed node turning down. Screenshots go to docs/img/; the measured figures (page weight, time
to interactive, MiB/s through the browser) are printed and written to
docs/img/console-figures.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dfsring.cli.launcher import LocalCluster

pytestmark = pytest.mark.browser
pw_api = pytest.importorskip("playwright.sync_api")
expect = pw_api.expect

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
AXE = (Path(__file__).resolve().parent / "vendor" / "axe.min.js").read_text()
BIG_MIB = 50
BLOCK = os.urandom(1 << 20)
FIGURES: dict[str, Any] = {}


def api(cluster: LocalCluster, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(cluster.nodes[0].url + path, data=body, method=method,
                                 headers={**cluster.auth_headers, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def page(context: Any) -> Any:
    return context.new_page()


def login(page: Any, url: str, access: str, secret: str) -> None:
    page.fill("#login-access", access)
    page.fill("#login-secret", secret)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()


def axe_check(page: Any, name: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    page.evaluate(AXE)  # through the devtools protocol: the page's CSP does not apply
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {bad}"


def shot(page: Any, name: str) -> None:
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / f"console-{name}.png"), full_page=True)


def test_01_login_page_weight_and_cluster_page(page: Any, cluster: LocalCluster) -> None:
    responses: list[Any] = []

    def record(resp: Any) -> None:
        responses.append(resp)

    page.on("response", record)
    started = time.monotonic()
    page.goto(cluster.nodes[0].url + "/ui")
    expect(page.locator("#login-access")).to_be_editable()
    FIGURES["time_to_interactive_s"] = round(time.monotonic() - started, 3)
    FIGURES["dom_interactive_ms"] = page.evaluate(
        "() => performance.getEntriesByType('navigation')[0].domInteractive")
    page.remove_listener("response", record)
    sizes = [r.request.sizes() for r in responses]
    FIGURES["first_load_requests"] = len(sizes)
    FIGURES["first_load_kib"] = round(sum(s["responseBodySize"] + s["responseHeadersSize"]
                                          for s in sizes) / 1024, 1)
    axe_check(page, "login")
    shot(page, "login")
    creds = cluster.credentials
    login(page, cluster.nodes[0].url, creds.access_key, creds.secret_key)
    rows = page.locator("#members tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#members [data-liveness=up]")).to_have_count(3)
    expect(page.locator("#ring-line")).to_contain_text("Ring epoch")
    axe_check(page, "cluster")
    shot(page, "cluster")


def drop_files(page: Any, files: list[tuple[str, str, int]]) -> None:
    """Drop files built in the page: (name, base64 block, repeat count)."""
    handle = page.evaluate_handle("""(files) => {
        const dt = new DataTransfer();
        for (const [name, b64, times] of files) {
            const bin = atob(b64), block = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) block[i] = bin.charCodeAt(i);
            dt.items.add(new File(Array(times).fill(block), name,
                                  {type: 'application/octet-stream'}));
        }
        return dt;
    }""", files)
    page.dispatch_event("#drop", "drop", {"dataTransfer": handle})


def test_02_bucket_and_drop_three_files(page: Any, cluster: LocalCluster) -> None:
    page.click("#nav a[data-page=files]")
    page.fill("#bucket-new", "photos")
    page.click("#bucket-form button[type=submit]")
    expect(page.locator("#bucket-select")).to_have_value("photos")
    expect(page.locator("#drop")).to_be_visible()
    block = base64.b64encode(BLOCK).decode()
    small = base64.b64encode(b"first version\n").decode()
    drop_files(page, [("big.bin", block, BIG_MIB), ("a.txt", small, 1),
                      ("b.txt", small, 3)])
    # progress advances: the big one shows a partial bar before it completes
    big = page.locator("#uploads li[data-upload='big.bin']")
    expect(big).to_be_visible()
    for name in ("big.bin", "a.txt", "b.txt"):
        expect(page.locator(f"#uploads li[data-upload='{name}']")).to_have_attribute(
            "data-state", "done", timeout=120_000)
        expect(page.locator(f"#files tr[data-path='{name}']")).to_be_visible()
    seconds = float(big.get_attribute("data-seconds") or "0")
    FIGURES["upload_mib_s"] = round(BIG_MIB / max(seconds, 1e-3), 1)
    value, top = big.locator("progress").evaluate("p => [p.value, p.max]")
    assert value == top == BIG_MIB << 20
    assert big.get_attribute("data-partial") == "seen", "the bar never showed a partial value"
    axe_check(page, "files")
    shot(page, "files")


def test_03_chunk_map(page: Any) -> None:
    page.get_by_role("button", name="Versions of big.bin").click()
    page.locator("#versions-list li button", has_text="Chunks").first.click()
    expect(page.locator("#chunkmap-summary")).to_contain_text("chunks, 3 replicas each")
    assert page.locator("#chunkmap tbody tr").count() > 1
    expect(page.locator("#chunkmap tbody tr").first).to_contain_text("3 of 3 up")
    axe_check(page, "chunk map")
    shot(page, "chunkmap")
    page.click("#versions-close")


def test_03b_download_compares_sha256(page: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    with page.expect_download(timeout=120_000) as info:
        page.locator("#files tr[data-path='big.bin'] a", has_text="Download").click()
    saved = tmp_path / "big.bin"
    info.value.save_as(saved)
    FIGURES["download_mib_s"] = round(BIG_MIB / max(time.monotonic() - started, 1e-3), 1)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == \
        hashlib.sha256(BLOCK * BIG_MIB).hexdigest()


def test_04_overwrite_then_restore_the_old_version(page: Any, cluster: LocalCluster) -> None:
    second = base64.b64encode(b"second version\n").decode()
    drop_files(page, [("a.txt", second, 1)])
    expect(page.locator("#uploads li[data-upload='a.txt'][data-state=done]")).to_have_count(2)
    assert api(cluster, "GET", "/v1/files/photos/a.txt")[1] == b"second version\n"
    page.locator("#files tr[data-path='a.txt'] button", has_text="Versions").click()
    items = page.locator("#versions-list li")
    expect(items).to_have_count(2)
    page.locator("#versions-list li button", has_text="Restore").click()
    expect(page.locator("#versions-list li")).to_have_count(3)
    assert api(cluster, "GET", "/v1/files/photos/a.txt")[1] == b"first version\n"
    page.click("#versions-close")


def test_05_delete_with_confirmation(page: Any, cluster: LocalCluster) -> None:
    page.once("dialog", lambda d: d.accept())
    page.locator("#files tr[data-path='b.txt'] button", has_text="Delete").click()
    expect(page.locator("#files tr[data-path='b.txt']")).to_have_count(0)
    assert api(cluster, "GET", "/v1/files/photos/b.txt")[0] == 404


def test_06_resolve_a_sibling(page: Any, cluster: LocalCluster) -> None:
    for value in (b'{"v": 1}', b'{"v": 2}'):  # no context: concurrent writes, two siblings
        assert api(cluster, "PUT", "/v1/kv/notes/k", value,
                   {"Content-Type": "application/json"})[0] == 204
    assert api(cluster, "GET", "/v1/kv/notes/k")[0] == 300
    page.click("#nav a[data-page=kv]")
    page.fill("#kv-bucket", "notes")
    page.click("#kv-form button[type=submit]")
    page.locator("#kv-keys button", has_text="k").click()
    expect(page.locator("#kv-siblings .sibling")).to_have_count(2)
    page.check("input[name=kv-view][value=json]")
    axe_check(page, "kv")
    shot(page, "kv")
    page.locator("#kv-siblings button", has_text="Keep sibling 2").click()
    expect(page.locator("#kv-siblings .sibling")).to_have_count(1)
    status, body = api(cluster, "GET", "/v1/kv/notes/k")
    assert status == 200 and json.loads(body) in ({"v": 1}, {"v": 2})


def test_07_admin_page(page: Any) -> None:
    page.click("#nav a[data-page=admin]")
    expect(page.locator("#keys caption")).to_be_visible()
    axe_check(page, "admin")
    shot(page, "admin")


def test_08_read_only_key_sees_no_upload_and_is_refused(browser: Any,
                                                       cluster: LocalCluster) -> None:
    status, body = api(cluster, "POST", "/v1/admin/keys", b'{"name": "viewer"}',
                       {"Content-Type": "application/json"})
    assert status == 201, body
    key = json.loads(body)
    status, body = api(cluster, "PUT", f"/v1/buckets/photos/grants/{key['access_key']}",
                       b'{"role": "read"}', {"Content-Type": "application/json"})
    assert status in (200, 204), body
    ctx = browser.new_context()
    try:
        viewer = ctx.new_page()
        viewer.goto(cluster.nodes[0].url + "/ui#files")
        login(viewer, cluster.nodes[0].url, key["access_key"], key["secret_key"])
        viewer.click("#nav a[data-page=files]")
        expect(viewer.locator("#bucket-select")).to_have_value("photos")
        expect(viewer.locator("#files tr[data-path='a.txt']")).to_be_visible()
        expect(viewer.locator("#upload")).to_be_hidden()
        expect(viewer.locator("#nav a[data-page=admin]")).to_be_hidden()
        expect(viewer.locator("#files tr[data-path='a.txt'] button.danger")).to_have_count(0)
        status = viewer.evaluate("""async () => {
            const csrf = document.cookie.match(/dfs_csrf=([^;]+)/)[1];
            const r = await fetch('/v1/files/photos/evil.txt', {method: 'PUT', body: 'x',
                headers: {'X-Csrf-Token': decodeURIComponent(csrf)}});
            return r.status; }""")
        assert status == 403
    finally:
        ctx.close()


def test_08b_phone_width_has_no_horizontal_scroll(page: Any) -> None:
    """Responsive down to a phone's width: the page never scrolls sideways (wide tables
    scroll inside their own box)."""
    page.set_viewport_size({"width": 360, "height": 740})
    try:
        for name in ("cluster", "files", "kv", "admin"):
            page.click(f"#nav a[data-page={name}]")
            expect(page.locator(f"#page-{name}")).to_be_visible()
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 361, f"{name}: {width} px wide at 360"
        page.click("#nav a[data-page=cluster]")
        expect(page.locator("#members tbody tr")).to_have_count(3)
        shot(page, "phone")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_09_swagger_ui_renders_the_document_offline(context: Any,
                                                    cluster: LocalCluster) -> None:
    docs = context.new_page()
    outside: list[str] = []
    docs.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(cluster.nodes[0].url) and not r.url.startswith("data:")
            else None)
    docs.goto(cluster.nodes[0].url + "/v1/docs")
    expect(docs.locator(".opblock").first).to_be_visible()
    assert docs.locator(".opblock").count() > 40
    assert outside == [], "Swagger UI fetched something from outside the node"
    shot(docs, "api-docs")
    docs.close()


def test_10_a_killed_node_turns_down_without_reload(page: Any, cluster: LocalCluster) -> None:
    page.click("#nav a[data-page=cluster]")
    expect(page.locator("#members [data-liveness=up]")).to_have_count(3)
    cluster.nodes[2].kill()
    started = time.monotonic()
    row = page.locator(f"#members tr[data-node='{cluster.nodes[2].node_id}']")
    expect(row.locator("[data-liveness=down]")).to_be_visible(timeout=60_000)
    FIGURES["down_shown_after_s"] = round(time.monotonic() - started, 1)
    expect(row.get_by_role("button", name=f"Remove {cluster.nodes[2].node_id}")).to_be_visible()
    axe_check(page, "cluster with a node down")
    shot(page, "cluster-down")
    print("console figures:", json.dumps(FIGURES))
    (DOCS_IMG / "console-figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
