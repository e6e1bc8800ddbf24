"""DICOM listener benchmark: receive rate and job-creation delay.

    .venv/bin/python bench/bench_dicom_listener.py [--slices 300] [--repeat 3] [--quiet 2]

Writes a synthetic CT study (512x512 int16 slices, about 0.5 MB each) to a temporary folder,
starts ``lungcad dicom-listen`` as a separate process (embedded configuration: SQLite, local
object store on the same disk) and sends the study with dcmtk's ``storescu`` over loopback,
``--repeat`` times (a new study each time). Per run:

- receive: the study's bytes over storescu's wall time (association to release; every instance
  fsynced in the spool before its success status);
- job delay: from storescu's exit (the last instance acknowledged) to the job row being visible,
  minus the quiet period: what the ingest itself adds (inspection, storage, commit).

Context line: dcmtk's own ``storescp`` receiving the same study on the same disk (no fsync).
Prints a table and the medians. Targets: receive >= 50 MB/s; job delay <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
CALLING = "BENCH"


def write_study(folder: Path, slices: int) -> int:
    """A synthetic CT study of ``slices`` 512x512 slices; returns its size in bytes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    total = 0
    for i in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "BENCH", "BENCH^CT"
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [-256.0, -256.0, float(i)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 1.0
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 1400, (512, 512), dtype=np.int16).tobytes()
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_echo(port: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while subprocess.run(["echoscu", "-aet", CALLING, "-aec", "LUNGCAD", "127.0.0.1", str(port)],
                         capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the listener did not answer C-ECHO")
        time.sleep(0.2)


def storescu(folder: Path, port: int, called: str = "LUNGCAD") -> float:
    start = time.perf_counter()
    subprocess.run(["storescu", "-aet", CALLING, "-aec", called, "+sd", "127.0.0.1", str(port),
                    str(folder)], check=True, capture_output=True)
    return time.perf_counter() - start


def storescp_rate(folder: Path, size: int, work: Path) -> float | None:
    """dcmtk's storescp receiving the study on the same disk (MB/s), for context."""
    if not shutil.which("storescp"):
        return None
    out = work / "storescp"
    out.mkdir()
    port = free_port()
    server = subprocess.Popen(["storescp", "-aet", "LUNGCAD", "-od", str(out), str(port)],  # noqa: S603
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_echo(port)
        seconds = storescu(folder, port)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return size / seconds / 1e6


def count_jobs(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(text("jobs"))).scalar_one())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quiet", type=float, default=2.0, help="quiet period (s)")
    args = parser.parse_args()
    if not shutil.which("storescu"):
        print("storescu (dcmtk) is not installed: apt-get install -y dcmtk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGCAD_")}
    env.update({"LUNGCAD_ENV": "development", "LUNGCAD_DATA_DIR": str(work / "data"),
                "LUNGCAD_DICOM_AE_TENANTS": f"{CALLING}=bench",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])})
    listener = None
    try:
        subprocess.run([sys.executable, "-m", "lungcad.cli", "migrate"], env=env, check=True,
                       capture_output=True)
        engine = create_engine(f"sqlite:///{work / 'data' / 'lungcad.db'}")
        port = free_port()
        listener = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "lungcad.cli", "dicom-listen", "--host", "127.0.0.1",
             "--port", str(port), "--quiet-period", str(args.quiet)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_echo(port)
        rows = []
        for run in range(args.repeat):
            folder = work / f"study{run}"
            size = write_study(folder, args.slices)
            before = count_jobs(engine)
            seconds = storescu(folder, port)
            sent = time.perf_counter()
            while count_jobs(engine) == before:
                if time.perf_counter() - sent > args.quiet + 120:
                    raise RuntimeError("no job after two minutes")
                time.sleep(0.01)
            delay = time.perf_counter() - sent - args.quiet
            rows.append((size / 1e6, size / seconds / 1e6, delay))
            shutil.rmtree(folder)
        folder = work / "context"
        size = write_study(folder, args.slices)
        context = storescp_rate(folder, size, work)
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nDICOM listener, {args.slices} slices of 512x512, storescu over loopback, "
          f"quiet period {args.quiet:g} s, {os.cpu_count()} CPUs")
    print(f"{'run':>4} {'MB':>8} {'receive MB/s':>13} {'job delay after quiet (s)':>27}")
    for i, (mb, rate, delay) in enumerate(rows, 1):
        print(f"{i:>4} {mb:>8.1f} {rate:>13.1f} {delay:>27.2f}")
    print(f"{'median':>4} {statistics.median(r[0] for r in rows):>6.1f} "
          f"{statistics.median(r[1] for r in rows):>13.1f} "
          f"{statistics.median(r[2] for r in rows):>27.2f}")
    if context is not None:
        print(f"context: dcmtk storescp on the same disk (no fsync): {context:.1f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
