"""benchmarks/s3_bench.py runs end to end with tiny sizes (issue 19): a 3-node cluster with S3,
the big-object comparison with the native files API, 4 KiB ops and a 2 000-key listing, and
the JSON it writes has every figure. Figures are not judged here (a shared 2-core CI box makes
them noise); that the machinery measures something is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_s3_bench_smoke_run_writes_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "s3.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.s3_bench", "--size-mib", "12", "--small-ops", "200",
         "--list-objects", "2000", "--list-repeats", "2", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"s3_bench exit {proc.returncode}\n{proc.stderr[-4000:]}"
    doc = json.loads(out.read_text())
    big = doc["big_object"]
    for side in ("native", "s3"):
        assert big[side]["put_mib_s"] > 0 and big[side]["get_mib_s"] > 0, f"{side}: {big}"
    assert big["s3"]["parts"] >= 2, f"a 12 MiB boto3 upload goes multipart: {big['s3']}"
    assert set(big["s3_vs_native"]) == {"put_mib_s", "get_mib_s"}, big
    for op in ("put_4k", "get_4k"):
        fig = doc["small_objects"][op]
        assert fig["ops_per_s"] > 0 and 0 < fig["p50_ms"] <= fig["p99_ms"], f"{op}: {fig}"
    listing = doc["listing"]
    assert listing["objects"] == 2000 and listing["fill_objects_per_s"] > 0, listing
    for page in ("first_page", "middle_page"):
        assert 0 < listing[page]["best_ms"] <= listing[page]["median_ms"], f"{page}: {listing}"
