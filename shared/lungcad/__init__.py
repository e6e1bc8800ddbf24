"""LungCAD shared package: settings, database models, storage, schemas and imaging helpers.

Research use, not for clinical diagnosis.
"""

__version__ = "0.1.0"
