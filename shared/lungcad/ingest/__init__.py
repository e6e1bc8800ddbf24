"""Upload inspection: what a client sent, checked before anything is stored or queued.

Pure functions over files on disk (the gateway's spooled parts, the worker's downloads). Only
pydicom is used here, so the gateway stays free of SimpleITK and torch.
"""
