"""Parser faults in the child process fail one job, with a specific code, and spare the worker."""

from __future__ import annotations

import faulthandler
import os
import signal
import time

import numpy as np
import pytest

from lungcad.errors import ProcessingError
from lungcad_preprocess import isolate
from lungcad_preprocess.pipeline import PreprocessOptions


def run(monkeypatch, fn, **kw):
    monkeypatch.setattr(isolate, "preprocess_path", fn)
    kw.setdefault("memory_limit_bytes", 0)
    kw.setdefault("timeout_s", 20)
    return isolate.preprocess_isolated("unused", PreprocessOptions(), **kw)


def test_result_comes_back(synthetic_series):
    r = isolate.preprocess_isolated(synthetic_series, PreprocessOptions(),
                                    memory_limit_bytes=4 * 2**30, timeout_s=120)
    assert r.hu.dtype == np.int16 and r.lungs.any()
    assert r.meta["lung_volumes_ml"]["left_ml"] > 0


def segfault(*_):
    faulthandler.disable()  # keep pytest's fault handler quiet in the child
    os.kill(os.getpid(), signal.SIGSEGV)


def test_segfault_is_parser_crashed(monkeypatch):
    with pytest.raises(ProcessingError) as err:
        run(monkeypatch, segfault)
    assert err.value.code == "parser_crashed"
    assert "SIGSEGV" in err.value.message


def test_hang_is_parser_timeout(monkeypatch):
    started = time.monotonic()
    with pytest.raises(ProcessingError) as err:
        run(monkeypatch, lambda *_: time.sleep(60), timeout_s=1)
    assert err.value.code == "parser_timeout"
    assert time.monotonic() - started < 10


def test_runaway_memory_is_bounded(monkeypatch):
    def greedy(*_):
        return np.ones(8 * 2**30, dtype=np.uint8)  # 8 GiB

    with pytest.raises(ProcessingError) as err:
        run(monkeypatch, greedy, memory_limit_bytes=2 * 2**30)
    assert err.value.code == "parser_out_of_memory"


def test_processing_error_keeps_its_code(monkeypatch):
    def refuse(*_):
        raise ProcessingError("only a localizer", code="localizer_only")

    with pytest.raises(ProcessingError) as err:
        run(monkeypatch, refuse)
    assert (err.value.code, err.value.message) == ("localizer_only", "only a localizer")


def test_unexpected_exception_is_parser_crashed(monkeypatch):
    with pytest.raises(ProcessingError) as err:
        run(monkeypatch, lambda *_: 1 / 0)
    assert err.value.code == "parser_crashed"


def test_cancel_while_waiting_kills_the_child(monkeypatch):
    with pytest.raises(ProcessingError) as err:
        run(monkeypatch, lambda *_: time.sleep(60), on_wait=lambda: False,
            wait_interval_s=0.1)
    assert err.value.code == "canceled"
