"""Image geometry and volumes shared by preprocessing, inference and training.

Arrays are always indexed ``(z, y, x)`` (slice, row, column); physical points are always patient
LPS millimetres ``(x, y, z)``. :class:`Geometry` converts between the two.
"""

from lungcad.imaging.geometry import Geometry
from lungcad.imaging.volume import Volume

__all__ = ["Geometry", "Volume"]
