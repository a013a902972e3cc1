"""Activation dumps: HDF5 round trip against the model itself, chunk-aligned writes, filters."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from lspipe.core import models
from lspipe.core.inference import predict
from lspipe.engine.activations import write_dump
from lspipe.engine.dumpfile import COMPRESSIONS, Dump, write_h5
from conftest import synthetic_data


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    data = synthetic_data((150, 40, 50), class_names=["ant", "bee", "cat"], name="toy")
    model = models.create("smallcnn", 3, 1, 8, data.mean, data.std).eval()
    return data, model


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_dump_round_trip_equals_the_models_outputs(toy, tmp_path, compression):
    data, model = toy
    path = tmp_path / "d.h5"
    write_dump(path, model, data, attrs={"alpha": 0.1, "run": "a0.1_s0", "teacher_alpha": None}, max_train=100,
               seed=3, chunk_rows=16, compression=compression)
    d = Dump(path)
    assert d.classes == data.classes and d.splits == ["train", "val", "test"]
    assert d.meta("alpha") == 0.1 and d.meta("run") == "a0.1_s0" and d.meta("teacher_alpha") == "none"
    np.testing.assert_array_equal(d.weight, model.classifier.weight.detach().numpy())
    np.testing.assert_array_equal(d.bias, model.classifier.bias.detach().numpy())
    for split in ("train", "val", "test"):
        s = d.split(split)
        n = 100 if split == "train" else len(data.y[split])
        assert s.logits.shape == (n, 3) and s.features.dtype == np.float32
        assert len(np.unique(s.index)) == n and np.all(np.diff(s.index) > 0)  # sorted subset, no repeats
        np.testing.assert_array_equal(s.labels, data.y[split][s.index])
        # the same inputs through the model, in one batch, give the dumped logits and features
        logits, feats = predict(model, data.x[split][s.index], "cpu", batch_size=1000, features=True)
        np.testing.assert_allclose(s.logits, logits.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(s.features, feats.numpy(), rtol=1e-5, atol=1e-5)
        # logits are the last layer applied to the dumped features (what the projections rely on)
        np.testing.assert_allclose(s.logits, s.features @ d.weight.T + d.bias, rtol=1e-4, atol=1e-4)
    with h5py.File(path, "r") as f:
        ds = f["val/features"]
        assert ds.chunks == (16, ds.shape[1])
        assert ds.compression == (None if compression == "none" else compression)
    # the train subset is seeded: the same seed picks the same examples
    write_dump(tmp_path / "e.h5", model, data, max_train=100, seed=3, compression=compression)
    np.testing.assert_array_equal(Dump(tmp_path / "e.h5").split("train").index, d.split("train").index)


def test_writer_asks_for_whole_chunk_blocks(tmp_path):
    rng = np.random.default_rng(1)
    n, dim, k, chunk = 20_500, 5, 4, 1000
    feats = rng.standard_normal((n, dim)).astype(np.float32)
    logits = rng.standard_normal((n, k)).astype(np.float32)
    calls = []

    def rows(a, b):
        calls.append((a, b))
        return feats[a:b], logits[a:b]

    write_h5(tmp_path / "w.h5", classes=list("abcd"), weight=np.zeros((k, dim)), bias=np.zeros(k),
             splits={"val": (np.zeros(n, np.int64), np.arange(n), rows)}, chunk_rows=chunk, compression="lzf")
    assert calls == [(0, 8000), (8000, 16000), (16000, n)]  # 8 whole chunks per block; the last block is the rest
    s = Dump(tmp_path / "w.h5").split("val")
    np.testing.assert_array_equal(s.features, feats)
    np.testing.assert_array_equal(s.logits, logits)


def test_unknown_compression_and_class_are_clear_errors(toy, tmp_path):
    data, model = toy
    with pytest.raises(ValueError, match="allowed: lzf, gzip, none"):
        write_dump(tmp_path / "x.h5", model, data, compression="zstd")
    assert not (tmp_path / "x.h5").exists()
    write_dump(tmp_path / "y.h5", model, data, compression="none")
    with pytest.raises(KeyError, match="classes are: ant, bee, cat"):
        Dump(tmp_path / "y.h5").class_index("dog")


def test_dump_is_float32_even_inside_bf16_autocast(toy, tmp_path):
    """A dump equals the model's plain float32 logits and features (direct forward, no predict()),
    even when written from inside a bf16 autocast region (as training on a GPU runs): predict()
    switches autocast off, so nothing is rounded to bf16."""
    from lspipe.core.inference import full_float32

    data, model = toy
    x = torch.from_numpy(data.x["val"])
    with torch.no_grad():
        ref_logits, ref_feats = model(x, features=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_logits = model(x)
    assert bf16_logits.dtype == torch.bfloat16  # the region really rounds when not switched off
    path = tmp_path / "d.h5"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        write_dump(path, model, data, max_train=None, chunk_rows=16)
    s = Dump(path).split("val")
    np.testing.assert_allclose(s.logits, ref_logits.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.features, ref_feats.numpy(), rtol=1e-6, atol=1e-6)
    assert np.abs(s.logits - bf16_logits.float().numpy()).max() > 1e-4  # bf16 would have been visible
    # TF32 is switched off inside the float32 region and the flags are restored afterwards
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), full_float32("cpu"):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert model(x).dtype == torch.float32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_dump_holds_the_whole_training_splits_logits(toy, tmp_path):
    """The train split is capped (features for the analyses), /train_full has every training example's logits."""
    data, model = toy
    path = tmp_path / "d.h5"
    write_dump(path, model, data, max_train=40, seed=1, chunk_rows=16)
    d = Dump(path)
    assert len(d.split("train").labels) == 40 and d.splits == ["train", "val", "test"]
    logits, labels, n = d.full_train()
    assert n == len(data.y["train"]) == 150 and logits.shape == (150, 3)
    np.testing.assert_array_equal(labels, data.y["train"])
    with torch.no_grad():
        ref = model(torch.from_numpy(data.x["train"])).numpy()
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    # the capped subset's logits are rows of the full ones
    s = d.split("train")
    np.testing.assert_allclose(s.logits, logits[s.index], rtol=1e-6, atol=1e-6)
