import json

import numpy as np

from lungcad.storage.local import LocalStore
from lungcad_preprocess.store import (
    decode_array,
    encode_array,
    load_preprocessed,
    store_preprocessed,
)


def test_npz_round_trip_is_a_plain_numpy_archive(tmp_path):
    arr = np.arange(-500, 500, dtype=np.int16).reshape(10, 10, 10)
    data = encode_array(arr, "hu")
    (tmp_path / "v.npz").write_bytes(data)
    with np.load(tmp_path / "v.npz", allow_pickle=False) as npz:
        assert np.array_equal(npz["hu"], arr)
    assert np.array_equal(decode_array(data, "hu"), arr)


def test_store_and_load_artifacts(tmp_path, synthetic_result):
    store = LocalStore(tmp_path)
    r = synthetic_result
    stored = store_preprocessed(store, "job-1", r.hu, r.lungs, r.meta)
    assert [a.name for a in stored] == ["volume", "lung_mask", "preprocess.json"]
    assert all(a.key.startswith("jobs/job-1/preprocess/") for a in stored)
    hu, labels, meta = load_preprocessed(store, "job-1")
    assert np.array_equal(hu, r.hu) and np.array_equal(labels, r.lungs)
    assert meta == json.loads(json.dumps(r.meta))
    blob = b"".join(store.get_bytes(a.key) for a in stored if a.name == "preprocess.json")
    for phi in (b"SYNTHETIC^PATIENT", b"SYN0001", b"19640101", b"ACC0001"):
        assert phi not in blob
