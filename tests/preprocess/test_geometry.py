import numpy as np
import pytest

from lungcad.imaging import Geometry, Volume


def test_index_world_round_trip_with_oblique_direction():
    angle = np.radians(20)
    d = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                  [0, 0, 1.0]])
    g = Geometry((10, 20, 30), (2.5, 0.7, 0.8), (-100.0, 50.0, -300.0), d.ravel())
    idx = np.array([[0, 0, 0], [3.5, 7.25, 11.0], [9, 19, 29]])
    assert np.allclose(g.world_to_index(g.index_to_world(idx)), idx)
    # voxel [0, 0, 1] is one column step (0.8 mm) along the first direction column
    assert np.allclose(g.index_to_world([0, 0, 1]) - g.origin, 0.8 * d[:, 0])
    assert np.allclose(g.index_to_world([1, 0, 0]) - g.origin, 2.5 * d[:, 2])


def test_crop_keeps_world_positions():
    g = Geometry((10, 20, 30), (2.0, 1.0, 1.0), (5.0, 6.0, 7.0))
    c = g.crop((2, 3, 4), (6, 10, 20))
    assert c.shape == (4, 7, 16)
    assert np.allclose(c.index_to_world([1, 1, 1]), g.index_to_world([3, 4, 5]))


def test_json_round_trip_and_validation():
    g = Geometry((4, 5, 6), (1.0, 2.0, 3.0), (1.0, 2.0, 3.0))
    assert Geometry.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError):
        Geometry((4, 5, 6), (0.0, 1.0, 1.0), (0, 0, 0))
    with pytest.raises(ValueError):
        g.crop((0, 0, 0), (5, 5, 6))


def test_sitk_conversion_reverses_axes():
    g = Geometry((4, 5, 6), (3.0, 2.0, 1.0), (1.0, 2.0, 3.0))
    v = Volume(np.arange(120, dtype=np.float32).reshape(4, 5, 6), g)
    image = v.to_sitk()
    assert image.GetSize() == (6, 5, 4)
    assert image.GetSpacing() == (1.0, 2.0, 3.0)
    assert image.GetPixel(5, 4, 3) == v.array[3, 4, 5]
    back = Volume.from_sitk(image)
    assert back.geometry == g
    assert np.array_equal(back.array, v.array)
