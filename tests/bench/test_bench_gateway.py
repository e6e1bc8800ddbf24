"""The context lines of ``bench/bench_gateway.py``: the HTTP receive floor really receives the
whole body (the sink answers the byte count it read), and the Server-Timing parser."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.conftest import free_port

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH_DIR))  # bench_gateway imports loadgen beside it
    try:
        spec = importlib.util.spec_from_file_location("bench_gateway",
                                                      BENCH_DIR / "bench_gateway.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH_DIR))
    return module


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_receive_floor_reads_every_byte(bench: ModuleType, tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    rate = bench.receive_floor(body, free_port(), repeat=2)
    assert rate is not None and rate > 0


def test_sha256_rate_and_server_timing(bench: ModuleType, tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    body.write_bytes(b"\0" * 1024 * 1024)
    assert bench.sha256_rate(body, repeat=1) > 0
    response = httpx.Response(202, headers={
        "Server-Timing": "receive;dur=12.5, inspect;dur=3, store;dur=0.4, commit;dur=7"})
    assert bench.server_phases(response) == {"receive": 12.5, "inspect": 3.0, "store": 0.4,
                                             "commit": 7.0}
