"""The Brock (PanCan) model 2b reproduces the published equation."""

from __future__ import annotations

import math

import pytest

from lungcad_inference.clinical.brock import BrockInputs, brock_probability


def reference(**changes: object) -> BrockInputs:
    base = {"size_mm": 4.0, "nodule_type": "solid", "upper_lobe": False, "spiculated": False,
            "nodule_count": 4, "age": 62, "sex": "M"}
    base.update(changes)
    return BrockInputs(**base)  # type: ignore[arg-type]


def test_reference_subject_is_the_intercept() -> None:
    result = brock_probability(reference())
    assert result.logit == pytest.approx(-6.7892, abs=1e-6)
    assert result.probability == pytest.approx(1 / (1 + math.exp(6.7892)), rel=1e-9)
    assert result.assumptions == ()


def test_worked_example_high_risk_nodule() -> None:
    """A 70-year-old woman with emphysema and a family history; a 15 mm spiculated part-solid
    upper-lobe nodule, the only one on the scan. By hand from the published coefficients:
    -6.7892 + 0.0287*8 + 0.6011 + 0.2961 + 0.2953 - 5.3854*((1.5)**-0.5 - 1.58113883)
    + 0.377 + 0.6581 - 0.0824*(1 - 4) + 0.7729 = 0.8060 -> 69.1 %."""
    inputs = reference(size_mm=15.0, nodule_type="part-solid", upper_lobe=True,
                       spiculated=True, nodule_count=1, age=70, sex="F", family_history=True,
                       emphysema=True)
    expected_logit = (-6.7892 + 0.0287 * 8 + 0.6011 + 0.2961 + 0.2953
                      - 5.3854 * (1.5 ** -0.5 - 1.58113883) + 0.377 + 0.6581 + 0.0824 * 3
                      + 0.7729)
    result = brock_probability(inputs)
    assert result.logit == pytest.approx(expected_logit, abs=1e-6)
    assert result.probability == pytest.approx(0.6913, abs=5e-4)


def test_worked_example_small_ground_glass_nodule() -> None:
    """A 55-year-old man, one 6 mm ground-glass lower-lobe nodule among 3:
    -6.7892 + 0.0287*(-7) - 5.3854*((0.6)**-0.5 - 1.58113883) - 0.1276 - 0.0824*(-1)
    = -5.4728 -> 0.418 %."""
    result = brock_probability(reference(size_mm=6.0, nodule_type="ground-glass",
                                         nodule_count=3, age=55))
    assert result.probability == pytest.approx(0.00418, abs=5e-5)


def test_missing_age_and_sex_are_stated_assumptions() -> None:
    result = brock_probability(reference(age=None, sex=None))
    assert result.logit == pytest.approx(-6.7892, abs=1e-6)
    assert any("age" in a for a in result.assumptions)
    assert any("sex" in a for a in result.assumptions)


def test_risk_rises_with_each_risk_factor() -> None:
    base = brock_probability(reference(size_mm=8.0)).probability
    for change in ({"size_mm": 12.0}, {"sex": "F"}, {"upper_lobe": True},
                   {"spiculated": True}, {"nodule_type": "part-solid"}, {"age": 75},
                   {"nodule_count": 1}):
        inputs = reference(**{"size_mm": 8.0, **change})
        assert brock_probability(inputs).probability > base, change
    assert brock_probability(reference(size_mm=8.0,
                                       nodule_type="ground-glass")).probability < base
