"""Detector benchmark on the real shared studies, after preprocessing, on CPU, beside MONAI's
RetinaNet.

Per study: detector wall time (one fully convolutional pass + decoding + malignancy scoring of
the candidates, i.e. ``detect()``), the network pass alone, peak resident memory during the
pass, FLOPs of the pass (``torch.utils.flop_counter``) and the achieved GFLOP/s, beside the
machine's measured fp32 matmul GFLOP/s. Preprocessing is not timed (cached).

The peer a user would otherwise pick is MONAI's RetinaNet as its model-zoo bundle
``lung_nodule_ct_detection`` configures it (``configs/inference.json``: ResNet-50 FPN backbone,
3 anchor shapes, images at 0.703125 x 0.703125 x 1.25 mm, sliding windows of 512 x 512 x 192
voxels with 0.25 overlap; its training patches are 192 x 192 x 80). Random weights: only the
cost matters. One 192 x 192 x 80 window is timed (median of ``--monai-repeat`` passes after one
pass that counts its FLOPs); the time per study is that window time times the number of windows
MONAI's sliding-window inferer would run on the same lung box resampled to the bundle's spacing.
For the bundle's own 512 x 512 x 192 windows the time is scaled by voxels (the network is fully
convolutional: its FLOPs per voxel do not depend on the window size). Anchor decoding, NMS and
MONAI's preprocessing are not counted, which favours RetinaNet. MONAI is a bench-only extra
(``pip install -r requirements-bench.txt``); without it that part is skipped with a message.

    python bench/bench_detector.py --threads 2 [--data ../shared/data] [--studies NAME ...]
        [--monai-repeat 3] [--skip-monai] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("bench_detector")
STUDIES = ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "QIN-LSC-0014", "QIN-LSC-0088")
XYZ = tuple[int, int, int]


@dataclass(frozen=True)
class RetinaNetBundle:
    """MONAI model-zoo ``lung_nodule_ct_detection`` settings. Sizes are ``(x, y, z)``, the axis
    order of MONAI's arrays after ``Orientationd(axcodes="RAS")``."""

    spacing_mm: tuple[float, float, float] = (0.703125, 0.703125, 1.25)
    infer_roi: XYZ = (512, 512, 192)  # inference.json "infer_patch_size"
    timed_roi: XYZ = (192, 192, 80)  # train.json "patch_size", the window the issue names
    overlap: float = 0.25
    size_divisible: XYZ = (16, 16, 8)


BUNDLE = RetinaNetBundle()


@dataclass(frozen=True)
class WindowTiming:
    """One timed RetinaNet window: ``seconds`` of each repeat and the FLOPs of one pass."""

    roi: XYZ
    seconds: list[float]
    flops: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def flops_per_voxel(self) -> float:
        return self.flops / math.prod(self.roi)

    def seconds_for(self, roi: XYZ) -> float:
        """Median time scaled to a window of ``roi`` voxels."""
        return self.median_s * math.prod(roi) / math.prod(self.roi)


class PeakRss:
    """Samples this process's resident set size every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self.base = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- MONAI sliding-window arithmetic (pure; no MONAI needed) -----------------------------------

def box_at_spacing(shape_zyx: Sequence[int], spacing_zyx: Sequence[float],
                   new_spacing_xyz: Sequence[float]) -> XYZ:
    """Voxel counts ``(x, y, z)`` of a ``(z, y, x)`` box resampled to ``new_spacing_xyz`` mm
    (the extent is kept, as MONAI's ``Spacingd`` does)."""
    extent_xyz = [n * s for n, s in zip(shape_zyx[::-1], spacing_zyx[::-1], strict=True)]
    x, y, z = (max(1, round(e / s)) for e, s in zip(extent_xyz, new_spacing_xyz, strict=True))
    return x, y, z


def inferer_image_size(image: Sequence[int], roi: Sequence[int],
                       size_divisible: Sequence[int]) -> XYZ:
    """The size MONAI's ``RetinaNetDetector`` slides over: padded up to a multiple of
    ``size_divisible`` (``preprocess_images``), then up to ``roi``
    (``sliding_window_inference``)."""
    x, y, z = (max(math.ceil(n / k) * k, r)
               for n, r, k in zip(image, roi, size_divisible, strict=True))
    return x, y, z


def windows_along(size: int, roi: int, overlap: float) -> int:
    """Windows along one axis of ``size >= roi`` voxels, as MONAI's ``_get_scan_interval`` and
    ``dense_patch_slices`` place them (interval ``int(roi * (1 - overlap))``, last one flush)."""
    if size == roi:
        return 1
    interval = max(int(roi * (1 - overlap)), 1)
    return math.ceil((size - roi) / interval) + 1


def sliding_window_count(image: Sequence[int], roi: Sequence[int], overlap: float,
                         size_divisible: Sequence[int]) -> int:
    """Windows MONAI's RetinaNet sliding-window inference runs on an ``image`` (same axis order
    as ``roi`` and ``size_divisible``)."""
    padded = inferer_image_size(image, roi, size_divisible)
    return math.prod(windows_along(n, r, overlap) for n, r in zip(padded, roi, strict=True))


def monai_window_count(image: Sequence[int], roi: Sequence[int], overlap: float,
                       size_divisible: Sequence[int]) -> int:
    """The same count from MONAI's own functions (needs MONAI)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = inferer_image_size(image, roi, size_divisible)
    interval = _get_scan_interval(padded, roi, len(roi), [overlap] * len(roi))
    return len(dense_patch_slices(padded, roi, interval))


# -- MONAI RetinaNet --------------------------------------------------------------------------

def import_monai() -> bool:
    """Import MONAI, with the torchvision shim installed first (``import monai`` already loads
    the detection modules, which resolve their torchvision imports then); ``False`` without
    MONAI."""
    from torchvision_shim import install

    if importlib.util.find_spec("monai") is None:
        return False
    install()
    import monai  # noqa: F401

    return True


def build_retinanet() -> Any:
    """The bundle's ``network_def`` (random weights), eval mode; after :func:`import_monai`."""
    from monai.apps.detection.networks.retinanet_network import (
        RetinaNet,
        resnet_fpn_feature_extractor,
    )
    from monai.networks.nets import resnet

    backbone = resnet.resnet50(spatial_dims=3, n_input_channels=1, conv1_t_stride=[2, 2, 1],
                               conv1_t_size=[7, 7, 7])
    extractor = resnet_fpn_feature_extractor(backbone, 3, False, [1, 2], None)
    net = RetinaNet(spatial_dims=3, num_classes=1, num_anchors=3, feature_extractor=extractor,
                    size_divisible=list(BUNDLE.size_divisible))
    return net.eval()


def time_retinanet_window(roi: XYZ, repeats: int) -> WindowTiming:
    """Median-ready times of ``repeats`` passes over one ``(1, 1, x, y, z)`` window, after one
    untimed pass that counts the FLOPs (and warms the kernels)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    net = build_retinanet()
    window = torch.rand((1, 1, *roi))  # the bundle scales HU to [0, 1]
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        net(window)
    seconds = []
    for _ in range(repeats):
        with torch.inference_mode():
            t = time.perf_counter()
            net(window)
            seconds.append(time.perf_counter() - t)
        log.info("RetinaNet %s window: %.1f s", "x".join(map(str, roi)), seconds[-1])
    return WindowTiming(roi, seconds, float(fc.get_total_flops()))


def retinanet_estimate(row: dict[str, Any], timing: WindowTiming) -> dict[str, Any]:
    """Windows and estimated RetinaNet seconds for one study row, for the timed window and
    for the bundle's inference window, with the ratio to our ``detect()`` median."""
    box = box_at_spacing(row["shape_zyx"], row["spacing_zyx"], BUNDLE.spacing_mm)
    out: dict[str, Any] = {"box_xyz_bundle": list(box)}
    for key, roi in (("timed", timing.roi), ("infer", BUNDLE.infer_roi)):
        n = sliding_window_count(box, roi, BUNDLE.overlap, BUNDLE.size_divisible)
        if monai_window_count(box, roi, BUNDLE.overlap, BUNDLE.size_divisible) != n:
            raise AssertionError(f"window count for {box} / {roi} differs from MONAI's")
        est = n * timing.seconds_for(roi)
        out[f"{key}_windows"] = n
        out[f"{key}_est_s"] = round(est, 1)
        out[f"{key}_ratio"] = round(est / row["detect_median_s"], 1)
    return out


# -- our detector -----------------------------------------------------------------------------

def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def detector_flops(models: Any, shape_zyx: Sequence[int]) -> tuple[float, list[int]]:
    """FLOPs of one detector pass over ``shape_zyx`` padded to the network's multiple."""
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lungcad_inference.intensity import normalise_hu

    shape = [n + (-n) % 16 for n in shape_zyx]
    x = torch.from_numpy(normalise_hu(np.zeros(shape, np.int16)))[None, None]
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        models.detector(x.contiguous(memory_format=torch.channels_last_3d))
    return float(fc.get_total_flops()), shape


def time_detector(models: Any, study: Any, repeats: int) -> dict[str, Any]:
    """One row: our network pass and ``detect()`` on a preprocessed study."""
    from lungcad_inference.inference import detect, run_detector

    run_detector(models, study.hu[:64, :64, :64])  # warm-up
    flops, padded = detector_flops(models, study.hu.shape)
    net_s, det_s = [], []
    with PeakRss() as rss:
        for _ in range(repeats):
            t = time.perf_counter()
            run_detector(models, study.hu)
            net_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            cands = detect(models, study.hu, study.lungs, study.geometry)
            det_s.append(time.perf_counter() - t)
    return {"study": study.name, "shape_zyx": list(study.hu.shape),
            "spacing_zyx": list(study.geometry.spacing), "padded_zyx": padded,
            "network_s": round(min(net_s), 2), "detect_s": round(min(det_s), 2),
            "detect_median_s": round(statistics.median(det_s), 2),
            "candidates": len(cands), "gflop": round(flops / 1e9, 1),
            "kflop_per_voxel": round(flops / math.prod(padded) / 1e3, 2),
            "achieved_gflops": round(flops / 1e9 / min(net_s), 1),
            "peak_rss_gb": round(rss.peak / 1e9, 2),
            "peak_rss_increase_gb": round((rss.peak - rss.base) / 1e9, 2)}


# -- report -----------------------------------------------------------------------------------

def _x(values: Sequence[int]) -> str:
    return " x ".join(str(v) for v in values)


def _span(values: Sequence[float], digits: int) -> str:
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return lo if lo == hi else f"{lo}-{hi}"


def format_table(rows: list[dict[str, Any]], timing: WindowTiming | None) -> str:
    """A markdown table, one row per study; RetinaNet columns only with ``timing``."""
    head = ["study", "lung box z,y,x (1 mm)", "detect() s", "network s", "GFLOP", "GFLOP/s",
            "peak RSS GB"]
    if timing is not None:
        t, i = _x(timing.roi), _x(BUNDLE.infer_roi)
        head += ["box x,y,z (bundle)", f"RN windows {t}", "RN est s", "RN / ours",
                 f"RN windows {i}", "RN est s", "RN / ours"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["study"], _x(r["shape_zyx"]), f'{r["detect_s"]:.2f}', f'{r["network_s"]:.2f}',
                 f'{r["gflop"]:.0f}', f'{r["achieved_gflops"]:.0f}', f'{r["peak_rss_gb"]:.2f}']
        if timing is not None:
            cells += [_x(r["box_xyz_bundle"]), str(r["timed_windows"]), f'{r["timed_est_s"]:.0f}',
                      f'{r["timed_ratio"]:.0f}x', str(r["infer_windows"]),
                      f'{r["infer_est_s"]:.0f}', f'{r["infer_ratio"]:.0f}x']
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_summary(rows: list[dict[str, Any]], timing: WindowTiming | None, mm: float,
                   threads: int) -> str:
    """Lines under the table: the RetinaNet window, FLOPs per voxel and the issue's targets."""
    lines = [f"fp32 matmul: {mm:.0f} GFLOP/s with {threads} threads"]
    if rows:
        ours = [r["kflop_per_voxel"] for r in rows]
        worst = max(r["detect_median_s"] for r in rows)
        lines.append(f"ours: {_span(ours, 1)} kFLOP per voxel (1 mm^3); slowest "
                     f"detect() median {worst:.2f} s (target <= 10 s: "
                     f"{'met' if worst <= 10 else 'NOT met'})")
    if timing is not None:
        secs = ", ".join(f"{s:.1f}" for s in timing.seconds)
        lines.append(f"RetinaNet window {_x(timing.roi)}: median {timing.median_s:.1f} s "
                     f"({secs}), {timing.flops / 1e12:.2f} TFLOP per window, "
                     f"{timing.flops_per_voxel / 1e6:.2f} MFLOP per voxel "
                     f"({timing.flops_per_voxel / math.prod(BUNDLE.spacing_mm) / 1e6:.2f} "
                     f"MFLOP per mm^3), "
                     f"{timing.flops / 1e9 / timing.median_s:.0f} GFLOP/s; bundle window "
                     f"{_x(BUNDLE.infer_roi)}: "
                     f"{timing.flops_per_voxel * math.prod(BUNDLE.infer_roi) / 1e12:.1f} TFLOP, "
                     f"~{timing.seconds_for(BUNDLE.infer_roi):.0f} s")
        if rows:
            least = min(min(r["timed_ratio"], r["infer_ratio"]) for r in rows)
            lines.append(f"smallest RetinaNet / ours ratio: {least:.0f}x (target >= 20x: "
                         f"{'met' if least >= 20 else 'NOT met'})")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "../shared/data"))
    p.add_argument("--cache", default="var/cache/studies")
    p.add_argument("--studies", nargs="+", default=list(STUDIES),
                   help="study zip names under DATA/ct, without .zip")
    p.add_argument("--repeats", type=int, default=2, help="passes of our detector per study")
    p.add_argument("--monai-repeat", type=int, default=3,
                   help="timed passes of the RetinaNet window (median)")
    p.add_argument("--skip-monai", action="store_true", help="no RetinaNet comparison")
    p.add_argument("--json")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from lungcad_inference.data.studies import load_study
    from lungcad_inference.inference import load_models

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    models = load_models("cpu", args.threads)
    mm = matmul_gflops()
    log.info("fp32 matmul: %.0f GFLOP/s with %d threads", mm, args.threads)
    rows = []
    for name in args.studies:
        zip_path = Path(args.data) / "ct" / f"{name}.zip"
        if not zip_path.exists():
            log.warning("skipping %s: %s absent", name, zip_path)
            continue
        study = load_study(zip_path, Path(args.cache))
        rows.append(time_detector(models, study, args.repeats))
        log.info(json.dumps(rows[-1]))
    timing = None
    if args.skip_monai:
        log.info("--skip-monai: no RetinaNet comparison")
    elif not import_monai():
        log.warning("MONAI is not installed, so the RetinaNet comparison is skipped "
                    "(pip install -r requirements-bench.txt)")
    else:
        timing = time_retinanet_window(BUNDLE.timed_roi, args.monai_repeat)
        for row in rows:
            row.update(retinanet_estimate(row, timing))
    result = {"threads": args.threads, "matmul_gflops": round(mm, 1), "studies": rows,
              "torch": torch.__version__,
              "retinanet_window": None if timing is None else {
                  "roi_xyz": list(timing.roi), "seconds": [round(s, 2) for s in timing.seconds],
                  "median_s": round(timing.median_s, 2), "tflop": round(timing.flops / 1e12, 3),
                  "mflop_per_voxel": round(timing.flops_per_voxel / 1e6, 3)}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(format_table(rows, timing))
    print(format_summary(rows, timing, mm, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
