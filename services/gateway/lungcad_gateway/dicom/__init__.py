"""DICOM in and out: the C-STORE listener (``lungcad dicom-listen``), its spool and the
quiet-period grouping of instances into studies."""
