"""LIDC XML reading sessions: grouping by position and the configurable consensus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungcad.imaging import Geometry
from lungcad_inference.data.lidc_xml import (
    ConsensusRule,
    consensus_nodules,
    group_marks,
    read_marks,
)

GEOMETRY = Geometry((10, 512, 512), (2.5, 0.7, 0.7), (-180.0, -180.0, -100.0))


def _circle(cx: float, cy: float, r: float, n: int = 24) -> str:
    pts = [(cx + r * np.cos(t), cy + r * np.sin(t)) for t in np.linspace(0, 2 * np.pi, n,
                                                                           endpoint=False)]
    return "".join(f"<edgeMap><xCoord>{x:.0f}</xCoord><yCoord>{y:.0f}</yCoord></edgeMap>"
                   for x, y in pts)


def _nodule(cx: float, cy: float, r: float, rating: int, zs: tuple[float, ...]) -> str:
    rois = "".join(f"<roi><imageZposition>{z}</imageZposition><inclusion>TRUE</inclusion>"
                   f"{_circle(cx, cy, r)}</roi>" for z in zs)
    return (f"<unblindedReadNodule><noduleID>n</noduleID><characteristics><malignancy>{rating}"
            f"</malignancy></characteristics>{rois}</unblindedReadNodule>")


def _small(cx: float, cy: float) -> str:
    return ("<unblindedReadNodule><noduleID>s</noduleID><roi><imageZposition>-90"
            f"</imageZposition><inclusion>TRUE</inclusion><edgeMap><xCoord>{cx}</xCoord>"
            f"<yCoord>{cy}</yCoord></edgeMap></roi></unblindedReadNodule>")


@pytest.fixture()
def xml_file(tmp_path: Path) -> Path:
    sessions = []
    ratings = [5, 4, 4, 2]
    for reader in range(4):
        body = _nodule(100 + reader, 200, 10, ratings[reader], (-95.0, -92.5, -90.0))
        if reader < 2:  # a second nodule marked by only two readers
            body += _nodule(300, 300, 8, 2, (-85.0, -82.5))
        body += _small(400, 50)
        sessions.append(f"<readingSession>{body}</readingSession>")
    text = ('<?xml version="1.0"?><LidcReadMessage xmlns="http://www.nih.gov">'
            + "".join(sessions) + "</LidcReadMessage>")
    path = tmp_path / "001.xml"
    path.write_text(text)
    return path


def test_marks_are_grouped_per_nodule_across_readers(xml_file: Path) -> None:
    marks = read_marks(xml_file, GEOMETRY)
    assert len(marks) == 4 + 2 + 4
    groups = group_marks(marks)
    assert sorted(len(g) for g in groups) == [2, 4, 4]
    for g in groups:
        assert len({m.reader for m in g}) == len(g)


def test_luna16_consensus_and_median_malignancy(xml_file: Path) -> None:
    nodules = consensus_nodules(read_marks(xml_file, GEOMETRY))
    assert len(nodules) == 1  # two-reader nodule and < 3 mm marks excluded
    n = nodules[0]
    assert n.malignancy == 1  # median of 5, 4, 4, 2 = 4 -> malignant
    x_expected = -180.0 + (100 + 1.5) * 0.7
    assert n.centre_mm[0] == pytest.approx(x_expected, abs=0.5)
    assert n.centre_mm[2] == pytest.approx(-92.5, abs=0.01)
    assert 8 < n.diameter_mm < 20  # 14 mm circle, 7.5 mm of slices


def test_consensus_is_configurable(xml_file: Path) -> None:
    marks = read_marks(xml_file, GEOMETRY)
    assert len(consensus_nodules(marks, ConsensusRule(min_readers=2))) == 2
    strict = ConsensusRule(malignant_min=4.5)
    assert consensus_nodules(marks, strict)[0].malignancy is None
