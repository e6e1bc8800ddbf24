"""The inference stage as one function, shared by the Celery task and ``lungcad analyze``:
preprocessed arrays in, findings document and rendered result files out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lungcad.findings import ModelInfo
from lungcad.imaging import Geometry
from lungcad_inference.analysis import AnalysisResult, PatientInfo, analyze_volume
from lungcad_inference.outputs import render_outputs


@dataclass
class InferenceOutput:
    result: AnalysisResult
    files: dict[str, tuple[bytes, str]]
    timings_s: dict[str, float]


@lru_cache(maxsize=1)
def models(device: str = "", threads: int = 0) -> Any:
    """The shipped models, loaded once per process (never at import)."""
    from lungcad_inference import load_models

    return load_models(device=device or None, threads=threads or None)


def model_info(loaded: Any) -> ModelInfo:
    return ModelInfo(name=str(getattr(loaded, "name", "lungcad-detector")),
                     version=str(getattr(loaded, "version", "unknown")))


def run_inference(hu: np.ndarray, lungs: np.ndarray, meta: dict[str, Any], patient: PatientInfo,
                  source_folder: Path | None, loaded: Any, job_id: str | None = None
                  ) -> InferenceOutput:
    from lungcad_inference import detect

    geometry = Geometry.from_dict(meta["geometry"])
    timings: dict[str, float] = {}
    t = time.perf_counter()
    candidates = detect(loaded, hu, lungs, geometry)
    timings["inference_detect"] = time.perf_counter() - t
    t = time.perf_counter()
    segmenter = loaded.segmenter() if hasattr(loaded, "segmenter") else None
    type_model = loaded.type_model() if hasattr(loaded, "type_model") else None
    result = analyze_volume(hu, lungs, geometry, meta, candidates, patient, model_info(loaded),
                            job_id=job_id, segmenter=segmenter, type_model=type_model)
    timings["inference_measure"] = time.perf_counter() - t
    t = time.perf_counter()
    result.document.timings_s.update({k: round(v, 3) for k, v in timings.items()})
    files = render_outputs(hu, lungs, geometry, meta, result, source_folder)
    timings["inference_reports"] = time.perf_counter() - t
    return InferenceOutput(result, files, timings)
