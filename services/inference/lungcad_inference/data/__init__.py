"""Readers for the training and evaluation data sets (LIDC-IDRI, LUNA16, DICOM-SEG, nodule VOIs).

Every reader returns plain dataclasses in patient LPS millimetres ``(x, y, z)``; conversion to the
preprocessed ``(z, y, x)`` grid happens in :mod:`lungcad_inference.data.studies`.
"""
