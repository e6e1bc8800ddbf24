"""The learned lung mask's array functions: what it may add to the classical mask (dense voxels
in the body, connected to a lung, the nearest lung's label, never too much), the 4 mm grid it
works on, and the shipped network's output on a synthetic chest."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from lungcad_preprocess import lung_net
from lungcad_preprocess.lung_net import add_masses, halve, stack_slices


def _chest() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 40^3 box: body everywhere inside a 2-voxel rim, two lungs (labels 1 and 2) of air 12
    voxels apart, soft tissue elsewhere."""
    hu = np.full((40, 40, 40), 40.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[5:35, 5:35, 3:14] = 1
    labels[5:35, 5:35, 26:37] = 2
    hu[labels > 0] = -850
    hu[:, 3, 2:38] = hu[:, 36, 2:38] = 700  # "ribs" in front of and behind the lungs
    body = np.zeros(hu.shape, bool)
    body[2:-2, 2:-2, 2:-2] = True
    return hu, labels, body


def test_a_dense_mass_between_the_lungs_is_added_with_the_nearest_lung_label() -> None:
    hu, labels, body = _chest()
    prob = np.zeros(hu.shape, np.float32)
    prob[14:26, 14:26, 12:28] = 0.9  # a 24 mm mass filling the gap (x 14-25), touching both
    out, info = add_masses(labels, hu, prob, body)
    added = (out > 0) & (labels == 0)
    assert not (added & (prob == 0)).any()
    assert added.sum() == info["added_voxels"] >= 0.9 * 12**3  # the corners may round off
    assert (out[16:24, 16:24, 14:20] == 1).all()  # nearer the right lung (x 3..13)
    assert (out[16:24, 16:24, 20:26] == 2).all()
    assert (out[labels > 0] == labels[labels > 0]).all()  # the classical labels are kept


def test_nothing_is_added_outside_the_rib_cage() -> None:
    hu, labels, body = _chest()
    hu[hu > 150] = 40  # no bone: no rib cage to be inside of
    prob = np.zeros(hu.shape, np.float32)
    prob[14:26, 14:26, 12:28] = 0.9
    out, info = add_masses(labels, hu, prob, body)
    assert info["added_voxels"] == 0 and (out == labels).all()


def test_a_thin_rim_around_the_lungs_is_not_a_mass() -> None:
    hu, labels, body = _chest()
    prob = np.zeros(hu.shape, np.float32)
    rim = ndi.binary_dilation(labels > 0, iterations=2) & (labels == 0)
    prob[rim] = 0.9  # 4 mm of partial volume around the lungs: not a mass
    out, info = add_masses(labels, hu, prob, body)
    assert info["added_voxels"] == 0 and (out == labels).all()


def test_air_outside_the_body_and_unconnected_additions_are_refused() -> None:
    hu, labels, body = _chest()
    prob = np.zeros(hu.shape, np.float32)
    prob[:, :, 0:2] = 0.9  # outside the body
    prob[36:40, 14:26, 14:26] = 0.9  # partly outside the body, not touching a lung
    hu_air = hu.copy()
    hu_air[14:26, 14:26, 14:26] = -900  # an airway-like air pocket between the lungs
    prob[14:26, 14:26, 14:26] = 0.9
    out, info = add_masses(labels, hu_air, prob, body)
    assert info["added_voxels"] == 0 and (out == labels).all()


def test_additions_larger_than_the_limit_are_refused() -> None:
    hu, labels, body = _chest()
    prob = np.full(hu.shape, 0.9, np.float32)  # everything: half the box again
    out, info = add_masses(labels, hu, prob, body, max_fraction=0.25)
    assert info["refused"] and (out == labels).all()


def test_halve_is_a_block_mean_with_edges_repeated() -> None:
    v = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    h = halve(v)
    assert h.shape == (2, 2, 3)
    assert h[0, 0, 0] == pytest.approx(v[0:2, 0:2, 0:2].mean())
    assert h[1, 1, 2] == pytest.approx(v[2, 2:4, 4].mean())  # edge repeated in z and x


def test_stacked_slices_are_clamped_at_the_ends() -> None:
    v = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 2), np.float32)
    s = stack_slices(v, np.array([0, 3]), 3)
    assert s.shape == (2, 3, 2, 2)
    assert list(s[0, :, 0, 0]) == [0, 0, 1] and list(s[1, :, 0, 0]) == [2, 3, 3]


def test_the_shipped_network_keeps_aerated_lung_and_leaves_out_the_air_around() -> None:
    loaded = lung_net.load()
    if loaded is None:
        pytest.fail("the shipped lung-mask weights are missing from the package")
    model, sidecar = loaded
    assert sidecar["input_spacing_mm"] == 2.0
    from scipy import ndimage as ndi

    from lungcad.synthetic import default_geometry, make_chest_ct

    ct = make_chest_ct(default_geometry((80, 170, 170), (2.0, 2.0, 2.0)), nodules=[])
    hu = ct.hu.astype(np.float32)
    prob = lung_net.predict_probability(model, hu)
    assert prob.shape == hu.shape and prob.dtype == np.float32
    inner = ndi.binary_erosion(ct.lungs > 0, iterations=3)
    assert np.median(prob[inner]) > 0.9
    assert np.median(prob[hu < -990]) < 0.1  # the air around the body


def test_refine_works_in_a_child_forked_after_torch_ran_in_the_parent() -> None:
    """The preprocessing runs in a forked child (isolate.py); a worker that also ran inference,
    or a test run, has used torch's thread pool before the fork, and a parallel region in the
    child then deadlocks. The child must finish."""
    import os
    import time

    import torch

    from lungcad.synthetic import default_geometry, make_chest_ct
    from lungcad_preprocess.lung_mask import segment_lungs

    torch.set_num_threads(2)
    torch.nn.functional.conv2d(torch.ones(4, 8, 64, 64), torch.ones(8, 8, 3, 3))  # the pool
    ct = make_chest_ct(default_geometry((60, 150, 150), (2.0, 2.0, 2.0)), nodules=[])
    hu = ct.hu.astype(np.float32)
    labels = segment_lungs(hu, 2.0)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when the learned step ran
        try:
            _, info = lung_net.refine(hu, labels, 2.0, threads=2)
            os._exit(0 if "seconds" in info else 3)  # the network ran
        except BaseException:
            os._exit(4)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.2)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the learned lung mask deadlocked in a child forked after torch ran")
