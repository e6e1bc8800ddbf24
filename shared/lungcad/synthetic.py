"""A synthetic chest CT with known anatomy and nodules, and a writer for it as a DICOM CT series.

Used by the demo, the gateway and preprocessing tests and the benchmark; it needs no real data.
Anatomy is defined in patient LPS millimetres (x: patient left, y: posterior, z: superior) so
any grid samples the same body. Arrays are ``(z, y, x)`` int16 HU.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungcad.imaging.geometry import Geometry

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
AIR_HU = -1000
LUNG_HU = -850


@dataclass(frozen=True)
class SyntheticNodule:
    """A nodule: centre in LPS mm, diameter in mm, ``kind`` solid | ground_glass | lobulated."""

    center_lps: tuple[float, float, float]
    diameter_mm: float
    kind: str = "solid"
    juxta_pleural: bool = False


@dataclass(frozen=True)
class SyntheticCT:
    """``hu`` (z, y, x) int16 on ``geometry``; ``lungs`` (z, y, x) uint8: 1 right, 2 left."""

    hu: np.ndarray
    geometry: Geometry
    nodules: tuple[SyntheticNodule, ...]
    lungs: np.ndarray = field(repr=False)


def default_nodules(z_mid: float) -> tuple[SyntheticNodule, ...]:
    """Four nodules placed relative to the lungs' mid height ``z_mid`` (LPS z, mm)."""
    return (
        SyntheticNodule((-80.0, 10.0, z_mid + 20.0), 10.0, "solid"),
        SyntheticNodule((85.0, -10.0, z_mid - 30.0), 12.0, "ground_glass"),
        SyntheticNodule((-70.0, 30.0, z_mid - 50.0), 15.0, "lobulated"),
        SyntheticNodule((122.0, 10.0, z_mid + 5.0), 12.0, "solid", juxta_pleural=True),
    )


def default_geometry(shape: Sequence[int] = (96, 192, 192),
                     spacing: Sequence[float] = (2.5, 1.8, 1.8)) -> Geometry:
    """An axial grid centred on the chest: (z, y, x) ``shape`` and ``spacing``."""
    nz, ny, nx = shape
    sz, sy, sx = spacing
    origin = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2 + 20.0, -(nz - 1) * sz / 2)
    return Geometry(tuple(shape), tuple(spacing), origin)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Distance of points ``p`` from segment a-b, and where along it (0 at a, 1 at b)."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1), t


def _paint_tube(hu: np.ndarray, world: tuple[np.ndarray, np.ndarray, np.ndarray],
                geometry: Geometry, a: Sequence[float], b: Sequence[float], radius: float,
                value: float, where: np.ndarray | None = None,
                tip_radius: float | None = None) -> None:
    """Set voxels within ``radius`` mm of segment a-b (LPS) to ``value`` (bounding box only);
    with ``tip_radius`` the radius narrows linearly from a to b (a vessel tapering towards
    the periphery)."""
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    lo = np.minimum(a_, b_) - radius - 2
    hi = np.maximum(a_, b_) + radius + 2
    box = np.asarray([geometry.world_to_index(c) for c in (lo, hi)])
    start = np.clip(np.floor(box.min(axis=0)).astype(int), 0, None)
    stop = np.minimum(np.ceil(box.max(axis=0)).astype(int) + 1, geometry.shape)
    if np.any(stop <= start):
        return
    sl = tuple(slice(s, e) for s, e in zip(start, stop, strict=True))
    x, y, z = (w[sl] for w in world)
    d, t = _segment_distance(np.stack([x, y, z], axis=-1), a_, b_)
    inside = d <= (radius if tip_radius is None else radius + (tip_radius - radius) * t)
    if where is not None:
        inside &= where[sl]
    hu[sl][inside] = value


def make_chest_ct(geometry: Geometry | None = None,
                  nodules: Sequence[SyntheticNodule] | None = None, seed: int = 0,
                  noise_hu: float = 15.0) -> SyntheticCT:
    """Render a supine chest CT on ``geometry`` (an axis-aligned LPS grid).

    Body ellipse (fat rim, muscle), two lungs at about -850 HU with vessels, a heart indenting
    the left lung, trachea and main bronchi, spine, a table under the body, and ``nodules``
    (``default_nodules`` when None). Returns int16 HU ``(z, y, x)`` and the true lung labels.
    """
    geometry = geometry or default_geometry()
    rng = np.random.default_rng(seed)
    nz, ny, nx = geometry.shape
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij",
                             sparse=True)
    a = geometry.affine
    x = a[0, 0] * zz + a[0, 1] * yy + a[0, 2] * xx + a[0, 3]
    y = a[1, 0] * zz + a[1, 1] * yy + a[1, 2] * xx + a[1, 3]
    z = a[2, 0] * zz + a[2, 1] * yy + a[2, 2] * xx + a[2, 3]
    x, y, z = np.broadcast_arrays(x, y, z)
    world = (x, y, z)
    z_mid = 0.0
    hu = np.full(geometry.shape, AIR_HU, dtype=np.float32)

    body = (x / 165.0) ** 2 + (y / 115.0) ** 2 <= 1.0
    hu[body] = -100.0  # subcutaneous fat
    hu[(x / 150.0) ** 2 + (y / 100.0) ** 2 <= 1.0] = 45.0  # muscle / mediastinum
    table = (np.abs(x) < 200) & (y > 125) & (y < 140)
    hu[table] = 150.0

    def ellipsoid(cx: float, cy: float, cz: float, ax: float, ay: float, az: float) -> np.ndarray:
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0

    right = ellipsoid(-72.0, 5.0, z_mid, 55.0, 75.0, 110.0)
    left = ellipsoid(72.0, 5.0, z_mid, 55.0, 75.0, 110.0)
    heart = ellipsoid(25.0, -15.0, z_mid - 55.0, 55.0, 50.0, 60.0)
    left &= ~heart
    right &= ~heart
    lungs = np.zeros(geometry.shape, dtype=np.uint8)
    lungs[right] = 1
    lungs[left] = 2
    in_lung = lungs > 0
    hu[in_lung] = LUNG_HU + rng.normal(0.0, 20.0, size=int(in_lung.sum())).astype(np.float32)
    hu[heart] = 40.0
    hu[(x / 18.0) ** 2 + ((y - 85.0) / 20.0) ** 2 <= 1.0] = 450.0  # vertebral body

    carina = np.array([0.0, -5.0, z_mid + 45.0])
    _paint_tube(hu, world, geometry, (0.0, -15.0, z_mid + 200.0), carina, 9.0, AIR_HU)
    _paint_tube(hu, world, geometry, (0.0, -15.0, z_mid + 200.0), carina, 7.0, AIR_HU)
    for side in (-1.0, 1.0):
        end = carina + np.array([side * 38.0, 8.0, -30.0])
        _paint_tube(hu, world, geometry, carina, end, 6.0, 30.0)  # bronchial wall
        _paint_tube(hu, world, geometry, carina, end, 4.5, AIR_HU)
        for _ in range(9):  # vessels fanning out from the hilum
            tip = np.array([side * rng.uniform(60, 110), rng.uniform(-50, 60),
                            z_mid + rng.uniform(-90, 90)])
            hilum = np.array([side * 40.0, 0.0, z_mid + rng.uniform(-20, 20)])
            _paint_tube(hu, world, geometry, hilum, tip, rng.uniform(1.5, 3.5), 40.0,
                        where=in_lung, tip_radius=0.5)  # vessels taper to the periphery

    nodules = tuple(default_nodules(z_mid) if nodules is None else nodules)
    for n in nodules:
        value = -550.0 if n.kind == "ground_glass" else 35.0
        c = np.asarray(n.center_lps, float)
        r = n.diameter_mm / 2.0
        lobes = [c]
        if n.kind == "lobulated":
            offsets = ((1, 0, 0), (0, 1, 0.5), (-0.5, -0.6, 0))
            lobes += [c + r * 0.5 * np.asarray(v) for v in offsets]
        for i, centre in enumerate(lobes):
            _paint_tube(hu, world, geometry, centre, centre + 1e-3, r if i == 0 else r * 0.6,
                        value)

    if noise_hu > 0:
        hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return SyntheticCT(hu, geometry, nodules, lungs)


def _uid(prefix: str = "2.25.") -> str:
    from pydicom.uid import generate_uid

    return generate_uid(prefix=None) if prefix == "2.25." else generate_uid(prefix=prefix)


def write_dicom_series(hu: np.ndarray, geometry: Geometry, out_dir: str | Path, *,
                       patient_name: str = "SYNTHETIC^PATIENT", patient_id: str = "SYN0001",
                       patient_age: str = "060Y", patient_sex: str = "F",
                       study_uid: str | None = None, series_uid: str | None = None,
                       series_number: int = 2, series_description: str = "CHEST 1.0 B30f",
                       convolution_kernel: str = "B30f", modality: str = "CT",
                       image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
                       transfer_syntax: str = "1.2.840.10008.1.2.1", signed: bool = True,
                       rescale_intercept: float = -1024.0, rescale_slope: float = 1.0,
                       pixel_padding_value: int | None = None,
                       photometric: str = "MONOCHROME2", study_date: str = "20240102",
                       shuffle_names: bool = True,
                       instance_numbers: Sequence[int] | None = None) -> list[Path]:
    """Write ``hu`` (z, y, x) on ``geometry`` as one DICOM CT series, one file per slice.

    ImagePositionPatient / ImageOrientationPatient come from ``geometry`` (a sheared geometry
    gives a gantry-tilted stack). Stored values are ``(HU - intercept) / slope``. Compressed
    ``transfer_syntax`` values use pydicom's encoders (RLE Lossless, JPEG 2000 Lossless).
    File names are shuffled (as in real exports) unless ``shuffle_names`` is False.
    ``instance_numbers``: the InstanceNumber of each slice k (default k + 1; scanners often
    number from the head down, the reverse of the slice order along the normal).
    Returns the written paths in slice (k) order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ImplicitVRLittleEndian

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or _uid()
    series_uid = series_uid or _uid()
    frame_uid = _uid()
    d = geometry.direction_matrix
    iop = [float(v) for v in np.concatenate([d[:, 0], d[:, 1]])]
    sz, sy, sx = geometry.spacing
    stored = np.rint((hu.astype(np.float64) - rescale_intercept) / rescale_slope)
    if signed:
        stored = np.clip(stored, -32768, 32767).astype(np.int16)
    else:
        stored = np.clip(stored, 0, 65535).astype(np.uint16)
    now = dt.datetime(2024, 1, 2, 10, 0, 0)
    order = np.arange(geometry.shape[0])
    if shuffle_names:
        order = np.random.default_rng(geometry.shape[0]).permutation(order)
    ts = UID(transfer_syntax)
    paths = []
    for k in range(geometry.shape[0]):
        ipp = geometry.index_to_world([float(k), 0.0, 0.0])
        meta = FileMetaDataset()
        sop_uid = _uid()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if ts.is_compressed else ts
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.ImageType = list(image_type)
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19640101"
        ds.PatientAge = patient_age
        ds.PatientSex = patient_sex
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
        ds.AccessionNumber = "ACC0001"
        ds.InstitutionName = "Synthetic General Hospital"
        ds.ReferringPhysicianName = "REFERRER^DR"
        ds.StudyID = "1"
        ds.Modality = modality
        ds.Manufacturer = "LungCAD synthetic"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = int(instance_numbers[k]) if instance_numbers is not None else k + 1
        ds.SeriesDescription = series_description
        ds.ConvolutionKernel = convolution_kernel
        ds.SliceThickness = f"{sz:.4g}"
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.SliceLocation = f"{float(ipp @ geometry.slice_normal):.4f}"
        ds.PixelSpacing = [f"{sy:.6g}", f"{sx:.6g}"]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept = f"{rescale_intercept:g}"
        ds.RescaleSlope = f"{rescale_slope:g}"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
        if pixel_padding_value is not None:
            ds.PixelPaddingValue = pixel_padding_value
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        if ts.is_compressed:
            ds.compress(ts, encoding_plugin="")
        path = out / f"IM{int(order[k]):05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
