"""The one patient-level split shared by every model trained on the LIDC VOIs and the full
studies: a patient's fold is a hash of its ID, so it does not depend on which other patients
a data set holds, and the segmentation CV, the malignancy CV and the detector's
leave-one-study-out can all hold out the same patients.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

FOLDS = 5


def fold_of(patient_id: str, k: int = FOLDS) -> int:
    """The fold (0..k-1) of one patient: SHA-1 of the ID, modulo ``k``."""
    return int(hashlib.sha1(str(patient_id).encode()).hexdigest(), 16) % k


def fold_array(patients: Iterable[str], k: int = FOLDS) -> np.ndarray:
    """Fold index per row (every patient's rows share one fold)."""
    return np.array([fold_of(p, k) for p in patients], int)
