"""DICOM Structured Report: a TID 1500 measurement report written with highdicom. Each finding
is a planar ROI (a circle on its key slice of the source series) with long axis, short axis,
volume, mean HU and the model's probabilities. A finding that has a segment in the SEG also gets
a volumetric group (same tracking identifier) that references that segment (Referenced Segment)
and holds its volume and mean HU, so a viewer can link the report to the outline. A study
without findings gets one image-level group stating that no nodule was found."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from lungcad.findings import Finding

LONG_AXIS = hd.sr.CodedConcept("103339001", "SCT", "Long Axis")
SHORT_AXIS = hd.sr.CodedConcept("103340004", "SCT", "Short Axis")
MEAN_HU = hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient")
NODULE_PROBABILITY = hd.sr.CodedConcept("NODPROB", "99LUNGCAD", "Nodule probability")
MALIGNANCY_PROBABILITY = hd.sr.CodedConcept("MALPROB", "99LUNGCAD", "Malignancy probability")
BROCK_PROBABILITY = hd.sr.CodedConcept("BROCK", "99LUNGCAD", "Brock model probability")
PROBABILITY_UNIT = hd.sr.CodedConcept("1", "UCUM", "no units")


@dataclass(frozen=True)
class SrFinding:
    finding: Finding
    source_image: pydicom.Dataset  # header of the key slice
    row: float
    column: float
    segment: hd.sr.ReferencedSegment | None = None  # its segment in the SEG, if it has one


def _volume_measurements(f: Finding) -> list[hd.sr.Measurement]:
    return [hd.sr.Measurement(name=codes.SCT.Volume, value=round(f.volume_mm3, 1),
                              unit=codes.UCUM.CubicMillimeter),
            hd.sr.Measurement(name=MEAN_HU, value=round(f.mean_hu, 1),
                              unit=codes.UCUM.HounsfieldUnit)]


def _segment_group(item: SrFinding, segment: hd.sr.ReferencedSegment,
                   tracking: hd.sr.TrackingIdentifier, algorithm: hd.sr.AlgorithmIdentification
                   ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_segment=segment, finding_type=codes.SCT.Nodule,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
        measurements=_volume_measurements(item.finding), algorithm_id=algorithm)


def _groups(item: SrFinding, algorithm: hd.sr.AlgorithmIdentification) -> list:
    """The finding's planar group, then its volumetric group when it has a segment."""
    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=item.finding.id)
    groups: list = [_group(item, tracking, algorithm)]
    if item.segment is not None:
        groups.append(_segment_group(item, item.segment, tracking, algorithm))
    return groups


def _group(item: SrFinding, tracking: hd.sr.TrackingIdentifier,
           algorithm: hd.sr.AlgorithmIdentification
           ) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    f = item.finding
    spacing = float(item.source_image.PixelSpacing[1])
    radius_px = max(f.diameter_mm / 2 / spacing, 1.0)
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
        graphic_data=np.array([[item.column + 0.5, item.row + 0.5],
                               [item.column + 0.5 + radius_px, item.row + 0.5]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(item.source_image))
    measurements = [
        hd.sr.Measurement(name=LONG_AXIS, value=round(f.diameter_mm, 1),
                          unit=codes.UCUM.Millimeter),
        hd.sr.Measurement(name=SHORT_AXIS, value=round(f.short_axis_mm, 1),
                          unit=codes.UCUM.Millimeter),
        *_volume_measurements(f),
        hd.sr.Measurement(name=NODULE_PROBABILITY, value=round(f.nodule_probability, 4),
                          unit=PROBABILITY_UNIT, algorithm_id=algorithm),
        hd.sr.Measurement(name=MALIGNANCY_PROBABILITY, value=round(f.malignancy_probability, 4),
                          unit=PROBABILITY_UNIT, algorithm_id=algorithm),
        hd.sr.Measurement(name=BROCK_PROBABILITY, value=round(f.brock_probability, 4),
                          unit=PROBABILITY_UNIT),
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, referenced_region=region, finding_type=codes.SCT.Nodule,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)], measurements=measurements,
        algorithm_id=algorithm)


def measurement_report(items: list[SrFinding], evidence: list[pydicom.Dataset],
                       model_name: str, model_version: str) -> pydicom.Dataset:
    """A Comprehensive 3D SR holding one measurement group per finding."""
    algorithm = hd.sr.AlgorithmIdentification(name=model_name, version=model_version)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="LungCAD", manufacturer_name="LungCAD", model_name=model_name))
    groups: list = [group for item in items for group in _groups(item, algorithm)]
    if not groups:  # no nodule found: say so, about the whole series
        groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="case"),
            finding_type=codes.SCT.Nodule, algorithm_id=algorithm,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Lung)],
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.DCM.Finding,
                                                                 codes.SCT.Absent)],
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(ds)
                           for ds in evidence[:1]])]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=hd.UID(), series_number=902,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="LungCAD",
        series_description="LungCAD nodule report (research use, not for clinical diagnosis)",
        is_complete=True)
