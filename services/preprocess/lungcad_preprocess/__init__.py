"""LungCAD preprocessing: upload -> canonical 1 mm HU volume and lung mask.

See docs/preprocessing.md.
"""
