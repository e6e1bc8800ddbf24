"""``lungcad analyze PATH --out DIR``: the whole pipeline in this process, no servers.

PATH is a DICOM folder, a zip of one, a NIfTI, MetaImage (.mha, or .mhd beside its data) or
NRRD file. Writes ``findings.json``, ``sr.dcm`` and ``seg.dcm`` (DICOM input only), the key
images and an overview to DIR. Research use, not for clinical diagnosis.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lungcad.ingest.inspect import UploadSummary


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("analyze", help="analyse one study in this process (no servers)")
    p.add_argument("path", type=Path, help="DICOM folder or zip, NIfTI, MetaImage or NRRD")
    p.add_argument("--out", type=Path, required=True, help="folder for the results")
    p.add_argument("--series", default=None, help="SeriesInstanceUID to analyse")
    p.add_argument("--age", type=int, default=None, help="patient age (overrides the header)")
    p.add_argument("--sex", choices=["M", "F", "O"], default=None)
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=run)


def _check(path: Path) -> UploadSummary:
    """The gateway's upload checks, so both refuse the same inputs with the same codes; the
    summary carries the header's patient age and sex."""
    from lungcad.ingest.inspect import inspect_path
    from lungcad.settings import get_settings

    return inspect_path(path, get_settings())


def _unpack(path: Path, tmp: Path) -> Path:
    if path.is_file() and path.suffix.lower() == ".zip":
        from lungcad.ingest.archive import safe_extract
        from lungcad.settings import get_settings

        safe_extract(path, tmp / "input", get_settings())
        return tmp / "input"
    return path


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lungcad.errors import LungcadError
    from lungcad_inference.analysis import PatientInfo
    from lungcad_inference.runner import models, run_inference
    from lungcad_preprocess.pipeline import PreprocessOptions, preprocess_path

    console = Console(stderr=True)
    if not args.path.exists():
        console.print(f"[red]lungcad analyze: {args.path} does not exist[/red]")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = ["unpack", "preprocess", "load model", "detect and report", "write"]
    try:
        with tempfile.TemporaryDirectory(prefix="lungcad-analyze-") as tmp, Progress(
                TextColumn("{task.description:<20}"), BarColumn(), TimeElapsedColumn(),
                console=console, transient=False) as progress:
            task = progress.add_task(steps[0], total=len(steps))
            summary = _check(args.path)
            source = _unpack(args.path, Path(tmp))
            progress.update(task, advance=1, description=steps[1])
            pre = preprocess_path(source, PreprocessOptions(threads=args.threads or 2,
                                                            requested_series_uid=args.series))
            progress.update(task, advance=1, description=steps[2])
            loaded = models("", args.threads)
            progress.update(task, advance=1, description=steps[3])
            patient = PatientInfo(
                age=args.age if args.age is not None else summary.patient_age,
                sex=args.sex or summary.patient_sex)
            folder = source if source.is_dir() and pre.meta["source"].get("slices") else None
            output = run_inference(pre.hu, pre.lungs, pre.meta, patient, folder, loaded)
            output.result.document.timings_s.update(
                {f"preprocess_{k}": round(v, 3) for k, v in pre.timings_s.items()})
            progress.update(task, advance=1, description=steps[4])
            files = dict(output.files)
            files["findings.json"] = (output.result.document.model_dump_json(
                by_alias=True, indent=2).encode(), "application/json")
            for name, (data, _) in files.items():
                target = args.out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            progress.update(task, advance=1, description="done")
    except LungcadError as exc:
        console.print(f"[red]lungcad analyze: {exc.code}: {exc.message}[/red]")
        return 1
    _summary(console, json.loads(files["findings.json"][0]), args.out,
             time.perf_counter() - started)
    return 0


def _summary(console: Any, doc: dict[str, Any], out: Path, seconds: float) -> None:
    from rich.table import Table

    from lungcad.findings import Location

    table = Table(title=f"{len(doc['findings'])} finding(s)  -  {out}")
    for column in ("id", "diameter mm", "type", "location", "model score", "Brock risk",
                   "Lung-RADS v2022"):
        table.add_column(column)
    for f in doc["findings"]:
        table.add_row(f["id"], f"{f['diameter_mm']:.1f}", f["type"],
                      Location.model_validate(f["location"]).text(),
                      f"{f['malignancy_probability']:.2f}",
                      f"{f['brock_probability']:.3f}", f["lung_rads"]["category"])
    console.print(table)
    case = doc["case"]
    console.print(f"case: Lung-RADS v2022 {case['lung_rads']['category']}, model malignancy "
                  f"score {case['cancer_probability']:.2f} (not a calibrated risk), "
                  f"{case['class']}  ({seconds:.1f} s)")
    console.print("[bold]Research use, not for clinical diagnosis.[/bold]")
    sys.stdout.flush()
