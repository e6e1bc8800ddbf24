"""The Brock University (PanCan) nodule malignancy model, full model with spiculation.

McWilliams A, et al. Probability of cancer in pulmonary nodules detected on first screening CT.
N Engl J Med 2013;369:910-919 (model 2b). Coefficients as published:

    logit = -6.7892
            + 0.0287 * (age - 62)          + 0.6011 * female
            + 0.2961 * family history      + 0.2953 * emphysema
            - 5.3854 * ((size_mm / 10) ** -0.5 - 1.58113883)
            + 0.3770 * part-solid          - 0.1276 * non-solid (ground-glass)
            + 0.6581 * upper lobe          - 0.0824 * (nodule count - 4)
            + 0.7729 * spiculation

``size_mm`` is the nodule's longest diameter. The centring constants make the reference patient
(62 years, male, a 4 mm solid non-spiculated lower-lobe nodule, 4 nodules, no family history or
emphysema) a logit of exactly -6.7892. Research use, not for clinical diagnosis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INTERCEPT = -6.7892
AGE, FEMALE, FAMILY, EMPHYSEMA = 0.0287, 0.6011, 0.2961, 0.2953
SIZE, PART_SOLID, NON_SOLID = -5.3854, 0.3770, -0.1276
UPPER, COUNT, SPICULATION = 0.6581, -0.0824, 0.7729
SIZE_CENTRE = (4 / 10) ** -0.5  # 1.58113883

# Stated assumptions when the header lacks them (the PanCan cohort's typical subject).
DEFAULT_AGE = 62
DEFAULT_SEX = "M"


@dataclass(frozen=True)
class BrockInputs:
    size_mm: float
    nodule_type: str  # solid | part-solid | ground-glass
    upper_lobe: bool
    spiculated: bool
    nodule_count: int
    age: float | None = None
    sex: str | None = None  # M | F | O | None
    family_history: bool = False
    emphysema: bool = False


@dataclass(frozen=True)
class BrockResult:
    probability: float
    logit: float
    assumptions: tuple[str, ...] = field(default_factory=tuple)


def brock_logit(inputs: BrockInputs) -> tuple[float, tuple[str, ...]]:
    assumptions = []
    age = inputs.age
    if age is None:
        age = DEFAULT_AGE
        assumptions.append(f"age unknown: assumed {DEFAULT_AGE} years")
    sex = (inputs.sex or "").upper()
    if sex not in ("M", "F"):
        assumptions.append("sex unknown: assumed male (the lower-risk choice in this model)")
        sex = DEFAULT_SEX
    size = max(float(inputs.size_mm), 1.0)
    logit = INTERCEPT
    logit += AGE * (age - 62)
    logit += FEMALE * (sex == "F")
    logit += FAMILY * inputs.family_history
    logit += EMPHYSEMA * inputs.emphysema
    logit += SIZE * ((size / 10) ** -0.5 - SIZE_CENTRE)
    logit += PART_SOLID * (inputs.nodule_type == "part-solid")
    logit += NON_SOLID * (inputs.nodule_type == "ground-glass")
    logit += UPPER * inputs.upper_lobe
    logit += COUNT * (max(inputs.nodule_count, 1) - 4)
    logit += SPICULATION * inputs.spiculated
    return logit, tuple(assumptions)


def brock_probability(inputs: BrockInputs) -> BrockResult:
    logit, assumptions = brock_logit(inputs)
    return BrockResult(1.0 / (1.0 + math.exp(-logit)), logit, assumptions)
