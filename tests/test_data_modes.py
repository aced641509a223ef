"""Image modes scaled (not clipped) to [0, 1], and masks checked when a dataset is indexed/loaded."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pvqae_lib.data import (
    DataError,
    check_dataset,
    load_btad,
    load_folder,
    load_images,
    load_mtsd,
    load_mvtec,
)
from pvqae_lib.data.files import EmptyMaskWarning, read_image, read_mask


def _save(a_or_im, path: Path, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = (a_or_im if isinstance(a_or_im, Image.Image)
          else Image.fromarray(a_or_im, mode) if mode else Image.fromarray(a_or_im))
    im.save(path)
    return path


def _errors(match, fn, *args, **kwargs):
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# read_image: every mode to [0, 1] by its range
# ---------------------------------------------------------------------------------------------

def test_16bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 16384, 32768, 65535]] * 4, np.uint16)
    p = _save(a, tmp_path / "g16.png")
    assert Image.open(p).mode in ("I;16", "I")
    x, original = read_image(p, 4)
    assert original == (4, 4) and x.shape == (4, 4, 3) and x.dtype == np.float32
    assert np.allclose(x[0, :, 0], a[0] / 65535, atol=1e-6)
    assert np.allclose(x[..., 0], x[..., 2])  # greyscale replicated
    dark = np.full((8, 8), 4000, np.uint16)  # a dark 16-bit image: 0.06, not white (the old clip)
    assert np.allclose(read_image(_save(dark, tmp_path / "dark.png"), 8)[0], 4000 / 65535, atol=1e-6)


def test_16bit_big_endian_tiff(tmp_path):
    im = Image.new("I;16B", (6, 6), 50000)
    p = _save(im, tmp_path / "b.tif")
    assert Image.open(p).mode == "I;16B"
    assert np.allclose(read_image(p, 6)[0], 50000 / 65535, atol=1e-6)


def test_32bit_int_and_float_images(tmp_path):
    small = _save(Image.fromarray(np.array([[0, 1000], [30000, 65535]], np.int32), "I"), tmp_path / "i.tif")
    assert Image.open(small).mode == "I"
    x = read_image(small, 2)[0][..., 0]
    assert np.allclose(x, np.array([[0, 1000], [30000, 65535]]) / 65535, atol=1e-6)
    big = _save(Image.fromarray(np.array([[-100, 0], [100000, 200000]], np.int32), "I"), tmp_path / "j.tif")
    assert np.allclose(read_image(big, 2)[0][..., 0], (np.array([[-100, 0], [100000, 200000]]) + 100) / 200100,
                       atol=1e-6)
    unit = _save(Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)), tmp_path / "f.tif")
    assert np.allclose(read_image(unit, 2)[0][..., 1], [[0, 0.25], [0.5, 1.0]])  # [0, 1] kept as is
    wide = _save(Image.fromarray(np.array([[-5.0, 0.0], [5.0, 15.0]], np.float32)), tmp_path / "w.tif")
    assert np.allclose(read_image(wide, 2)[0][..., 1], [[0, 0.25], [0.5, 1.0]])  # min-max
    nan = _save(Image.fromarray(np.array([[np.nan, 0.0], [1.0, 1.0]], np.float32)), tmp_path / "nan.tif")
    _errors("nan.tif.*non-finite", read_image, nan, 2)


def test_eight_bit_modes(tmp_path):
    p = Image.new("P", (4, 4))
    p.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    p.putpixel((1, 1), 1)
    x = read_image(_save(p, tmp_path / "p.png"), 4)[0]
    assert np.allclose(x[1, 1], np.array([200, 100, 50]) / 255) and np.allclose(x[0, 0], 0)
    cmyk = read_image(_save(Image.new("CMYK", (4, 4), (0, 0, 0, 0)), tmp_path / "c.tif"), 4)[0]
    assert np.allclose(cmyk, 1.0)  # no ink: white
    rgba = read_image(_save(Image.new("RGBA", (4, 4), (200, 100, 50, 0)), tmp_path / "a.png"), 4)[0]
    assert np.allclose(rgba, np.array([200, 100, 50]) / 255)  # alpha dropped, not composited on black
    la = read_image(_save(Image.new("LA", (4, 4), (120, 0)), tmp_path / "la.png"), 4)[0]
    assert np.allclose(la, 120 / 255)
    one = Image.new("1", (4, 4), 0)
    one.putpixel((2, 3), 1)
    x = read_image(_save(one, tmp_path / "one.png"), 4)[0]
    assert x[3, 2].tolist() == [1, 1, 1] and x.sum() == 3
    grey = read_image(_save(np.full((4, 4), 77, np.uint8), tmp_path / "l.png"), 4)[0]
    assert np.allclose(grey, 77 / 255)


@pytest.mark.parametrize("dtype,mode_max", [(np.uint8, 255), (np.uint16, 65535)])
def test_resizing_antialiases_in_every_depth(tmp_path, dtype, mode_max):
    checker = ((np.indices((64, 64)).sum(0) % 2) * mode_max).astype(dtype)
    x = read_image(_save(checker, tmp_path / "c.png"), 8)[0]
    assert np.allclose(x, 0.5, atol=0.02)  # an average of the fine pattern, not samples of it


def test_load_images_and_loaders_use_the_same_reader(tmp_path):
    a = np.full((10, 12), 20000, np.uint16)
    p = _save(a, tmp_path / "mine" / "x.png")
    s = load_images([p], 8, "parts", ["parts"])
    assert abs(float(s.images.mean()) - 20000 / 65535) < 1e-4
    _save(a, tmp_path / "folder" / "train" / "good" / "0.png")
    t = load_folder(tmp_path / "folder", "train", 8)
    assert abs(float(t.images.mean()) - 20000 / 65535) < 1e-4


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------

def _tree(root: Path, mask: np.ndarray | Image.Image, size=(30, 20)):
    """A one-category MVTec tree whose only defect image has ``mask``."""
    rng = np.random.default_rng(0)
    for split, kind in (("train", "good"), ("test", "good"), ("test", "dent")):
        _save(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), root / "part" / split / kind / "000.png")
    _save(mask, root / "part" / "ground_truth" / "dent" / "000_mask.png")
    return root


def _left_half(value, dtype=np.uint8, size=(30, 20)):
    a = np.zeros((size[1], size[0]), dtype)
    a[:, : size[0] // 2] = value
    return a


@pytest.mark.parametrize("kind", ["0/255", "0/1", "mode 1", "16-bit 0/1", "16-bit 0/65535", "anti-aliased"])
def test_binary_masks_all_work(tmp_path, kind):
    if kind == "0/255":
        mask = _left_half(255)
    elif kind == "0/1":
        mask = _left_half(1)
    elif kind == "mode 1":
        mask = Image.fromarray(_left_half(255)).convert("1")
    elif kind.startswith("16-bit"):
        mask = _left_half(1 if kind.endswith("0/1") else 65535, np.uint16)
    else:  # like MTSD's masks: 0, 255 and grey edges
        mask = _left_half(255)
        mask[:, 15] = 200
        mask[:, 16] = 40
    root = _tree(tmp_path, mask)
    s = load_mvtec(root, "test", 30)
    defect = s.masks[s.labels == 1][0, 0]
    assert defect[:, :15].all() and not defect[:, 16:].any()
    assert check_dataset("mvtec", root) == 1


@pytest.mark.parametrize("values,match", [((0, 60, 100), "not binary: 3 distinct values from 0 to 100"),
                                          ((0, 1, 2), "not binary"),
                                          ((1, 255), "no background")])
def test_bad_masks_fail_the_test_split_and_check_dataset(tmp_path, values, match):
    a = np.full((20, 30), values[0], np.uint8)
    for i, v in enumerate(values):
        a[:, i * 10:(i + 1) * 10] = v
    root = _tree(tmp_path, a)
    message = _errors(match, load_mvtec, root, "test", 16)
    assert "000_mask.png" in message
    _errors(match, check_dataset, "mvtec", root)
    _errors(match, check_dataset, "folder", root / "part")
    assert len(load_mvtec(root, "train", 16)) == 1  # train alone has no masks to check


def test_empty_mask_is_accepted_and_warned(tmp_path):
    root = _tree(tmp_path, np.zeros((20, 30), np.uint8))
    with pytest.warns(EmptyMaskWarning, match="000_mask.png"):
        s = load_mvtec(root, "test", 16)
    assert s.labels.sum() == 1 and s.masks.sum() == 0
    with pytest.warns(EmptyMaskWarning):
        assert check_dataset("folder", root / "part") == 1


def test_mismatched_mask_found_before_training(tmp_path):
    root = _tree(tmp_path, _left_half(255, size=(31, 20)))
    message = _errors("31x20 but its image .*30x20", check_dataset, "mvtec", root, "part")
    assert "000_mask.png" in message


def test_check_dataset_btad_mtsd_synthetic(tmp_path):
    rng = np.random.default_rng(0)
    for rel in ("01/train/ok/0.bmp", "01/test/ok/1.bmp", "01/test/ko/2.bmp"):
        _save(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), tmp_path / "btad" / rel)
    _save(_left_half(1), tmp_path / "btad" / "01" / "ground_truth" / "ko" / "2.png")
    assert check_dataset("btad", tmp_path / "btad") == 1
    assert load_btad(tmp_path / "btad", "test", 16).masks[1].mean() == 0.5
    m = tmp_path / "mtsd"
    for i in range(5):
        _save(rng.integers(0, 256, (20, 30), dtype=np.uint8), m / "MT_Free" / "Imgs" / f"f{i}.jpg")
    _save(rng.integers(0, 256, (20, 30), dtype=np.uint8), m / "MT_Crack" / "Imgs" / "c.jpg")
    _save(np.zeros((20, 30), np.uint8), m / "MT_Crack" / "Imgs" / "c.png")
    # an empty mask is real data (the full MTSD download has four): accepted, named in one warning
    with pytest.warns(EmptyMaskWarning, match=r"1 defect image mask\(s\) are empty .*c\.png; counted as defective"):
        assert check_dataset("mtsd", m) == 1
    with pytest.warns(EmptyMaskWarning, match="c.png"):
        s = load_mtsd(m, "test", 16)
    assert s.labels.tolist() == [0, 1] and s.masks[1].sum() == 0   # one normal held out, then the defect
    _save(_left_half(255), m / "MT_Crack" / "Imgs" / "c.png")
    assert check_dataset("mtsd", m) == 1 and check_dataset("synthetic", None) == 0
    _errors("unknown dataset", check_dataset, "imagenet", m)


def test_read_mask_resizes_nearest(tmp_path):
    p = _save(_left_half(1), tmp_path / "m.png")
    small = read_mask(p, 6, tmp_path / "image.png", (30, 20))
    assert small.dtype == bool and small[:, :3].all() and not small[:, 3:].any()
