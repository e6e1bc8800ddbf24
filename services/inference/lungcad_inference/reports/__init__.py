"""Report artifacts: findings JSON, DICOM SR and SEG, key images."""
