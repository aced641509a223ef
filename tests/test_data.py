"""Tests of pvqae_lib.data: the synthetic generator, the real-data loaders, their errors, augment."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pvqae_lib.data import (
    CATEGORIES,
    DEFECT_KINDS,
    EXTRA_CATEGORIES,
    DataError,
    augment,
    concat,
    load_btad,
    load_dataset,
    load_folder,
    load_mtsd,
    load_mvtec,
    make_synthetic,
    mtsd_split,
    render,
    synthetic,
)
from pvqae_lib.nn.budget import patch_entropy

REAL_MTSD = Path("/work/shared/data/mtsd")


# ---------------------------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth_test():
    return make_synthetic("test", size=32)  # the default 120 per category


def test_synthetic_shapes_dtypes_range(synth_test):
    s = synth_test
    N = 3 * synthetic.TEST_PER_CATEGORY
    assert s.images.shape == (N, 3, 32, 32) and s.images.dtype == torch.float32
    assert s.masks.shape == (N, 1, 32, 32) and s.masks.dtype == torch.float32
    assert s.labels.dtype == torch.long and s.categories.dtype == torch.long
    assert 0 <= s.images.min() and s.images.max() <= 1
    assert set(s.masks.unique().tolist()) == {0.0, 1.0}
    assert s.category_names == list(CATEGORIES) and len(s.kinds) == len(s.paths) == N
    assert s.paths[0] == "synthetic/tile/good/0"


def test_synthetic_test_has_every_kind_with_the_default_counts(synth_test):
    for c, name in enumerate(synth_test.category_names):
        kinds = [k for k, cc in zip(synth_test.kinds, synth_test.categories.tolist()) if cc == c]
        assert kinds.count("good") == 40
        for kind in DEFECT_KINDS:
            assert kinds.count(kind) == 20, (name, kind)


def test_synthetic_masks_nonempty_exactly_for_defects(synth_test):
    area = synth_test.masks.mean((1, 2, 3))
    defective = torch.tensor([k != "good" for k in synth_test.kinds])
    assert torch.equal(synth_test.labels.bool(), defective)
    assert (area[~defective] == 0).all()
    assert (area[defective] > 0).all()
    # sizes: small but not tiny (a few percent of the image at most)
    assert area[defective].min() >= synthetic.MIN_MASK_FRACTION
    assert area[defective].max() < 0.12
    assert 0.003 < area[defective].mean() < 0.05


def test_synthetic_train_is_normal_only():
    s = make_synthetic("train", size=32, num_per_category=10)
    assert len(s) == 30 and s.labels.sum() == 0 and s.masks.sum() == 0 and set(s.kinds) == {"good"}
    assert len(make_synthetic("train", size=16, categories=["tile"])) == synthetic.TRAIN_PER_CATEGORY


def test_synthetic_deterministic_and_seeded():
    a = make_synthetic("test", size=32, num_per_category=10, seed=3)
    b = make_synthetic("test", size=32, num_per_category=10, seed=3)
    c = make_synthetic("test", size=32, num_per_category=10, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks) and a.kinds == b.kinds
    assert not torch.equal(a.images, c.images)
    # an image depends on (seed, split, category, i) only: asking for one category gives the same images
    d = make_synthetic("test", size=32, categories=["weave"], num_per_category=10, seed=3)
    assert torch.equal(d.images, a.images[a.categories == 1])


def test_synthetic_train_and_test_use_different_streams():
    train = make_synthetic("train", size=32, num_per_category=4)
    test = make_synthetic("test", size=32, num_per_category=12)
    good = test.subset([i for i, k in enumerate(test.kinds) if k == "good"])
    for x in train.images:
        assert (good.images - x).abs().amax((1, 2, 3)).min() > 0.05


def test_synthetic_normals_vary():
    s = make_synthetic("train", size=32, num_per_category=6)
    for c in range(3):
        x = s.images[s.categories == c]
        assert (x[1:] - x[0]).abs().mean() > 0.01


@pytest.mark.parametrize("category", CATEGORIES + EXTRA_CATEGORIES)
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_changes_exactly_the_masked_pixels(category, kind):
    """Render the same surface with and without the defect (same random stream): the changed pixels
    are on the foreground (the washer for 'disc'), and cover the mask."""
    for i in range(4):
        good, no_mask, foreground = render(category, "good", 48, np.random.default_rng([7, i]))
        bad, mask, _ = render(category, kind, 48, np.random.default_rng([7, i]))
        assert not no_mask.any() and mask.any()
        change = np.abs(bad - good).max(-1)
        assert (change[foreground == 0] == 0).all()  # nothing off the object changes
        assert (change[mask] > 0.01).mean() > 0.95  # the mask is where the defect is
        assert change.max() <= 0.3 * synthetic.CONTRAST_SCALE + 1e-6  # subtle
        if category == "disc":
            assert (foreground[mask] > synthetic.MASK_THRESHOLD).all()
            assert (foreground < 1).any()  # the disc really has a background


@pytest.mark.parametrize("size", [32, 96, 256])
def test_synthetic_any_size_scales_features(size):
    s = make_synthetic("test", size=size, num_per_category=6, seed=1)
    area = s.masks.mean((1, 2, 3))[s.labels == 1]
    assert s.images.shape[-1] == size and (area > 0).all()
    assert 0.002 < area.mean() < 0.06  # same fraction of the image at every size


def test_label_category_only_on_request():
    """The default data keeps its three categories; 'label' is made when named."""
    assert make_synthetic("train", size=32, num_per_category=1).category_names == list(CATEGORIES)
    s = make_synthetic("test", size=32, num_per_category=6, categories="label")
    assert s.category_names == ["label"] and set(s.kinds) == {"good", *DEFECT_KINDS}


def test_label_richness_varies_inside_the_image():
    """The label category's point (chapter 3): flat surface and dense print in one image, so the
    DWT entropy of its patches spreads far more within an image than on the tile or the weave."""
    def spread(category):
        x = make_synthetic("train", size=64, num_per_category=12, categories=category).images
        e = patch_entropy(x, 8).flatten(1)
        return (e.quantile(0.9, 1) - e.quantile(0.1, 1)).mean().item()

    label = spread("label")
    assert label > 0.25 and label > 2 * max(spread("tile"), spread("weave"))


def test_synthetic_errors():
    with pytest.raises(DataError, match="split"):
        make_synthetic("val")
    with pytest.raises(DataError, match="known: tile, weave, disc, label"):
        make_synthetic("train", categories=["wood"])
    with pytest.raises(DataError, match="size"):
        make_synthetic("train", size=4)


def test_imageset_helpers(synth_test):
    s = synth_test
    sub = s.subset(torch.tensor([5, 0, 200]))
    assert len(sub) == 3 and sub.paths == [s.paths[5], s.paths[0], s.paths[200]]
    x, m, y, c = sub[2]
    assert (torch.equal(x, s.images[200]) and torch.equal(m, s.masks[200]) and y == s.labels[200]
            and c == s.categories[200])
    disc = s.of_category("disc")
    assert len(disc) == 120 and (disc.categories == 2).all()
    assert "disc: good 40, crack 20, hole 20, scratch 20, stain 20" in s.summary()
    joined = concat([s.of_category("disc"), make_synthetic("train", 32, ["tile"], 2)])
    assert joined.category_names == ["tile", "weave", "disc"]
    assert joined.category_names[joined.categories[-1]] == "tile" and len(joined) == 122
    loader = torch.utils.data.DataLoader(s, batch_size=8)
    xb, mb, yb, cb = next(iter(loader))
    assert xb.shape == (8, 3, 32, 32) and mb.shape == (8, 1, 32, 32)


# ---------------------------------------------------------------------------------------------
# Tiny real-layout trees
# ---------------------------------------------------------------------------------------------

def _image(path: Path, size=(30, 20), mode="RGB", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def _mask(path: Path, size=(30, 20)):
    """White left half (x < 15 of 30): after resizing, half of the mask is set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size[1], size[0]), np.uint8)
    a[:, : size[0] // 2] = 255
    Image.fromarray(a).save(path)
    return path


def make_mvtec_category(folder: Path, kinds=("scratch", "hole"), n=2):
    for i in range(3):
        _image(folder / "train" / "good" / f"{i:03d}.png", seed=i)
    for i in range(2):
        _image(folder / "test" / "good" / f"{i:03d}.png", seed=10 + i)
    for kind in kinds:
        for i in range(n):
            _image(folder / "test" / kind / f"{i:03d}.png", seed=20 + i)
            _mask(folder / "ground_truth" / kind / f"{i:03d}_mask.png")


@pytest.fixture
def mvtec(tmp_path):
    make_mvtec_category(tmp_path / "bottle")
    make_mvtec_category(tmp_path / "grid", kinds=("bent",))
    (tmp_path / "license.txt").write_text("not a category")
    return tmp_path


def test_mvtec_loader(mvtec):
    train = load_mvtec(mvtec, "train", 16)
    assert train.category_names == ["bottle", "grid"] and len(train) == 6
    assert train.images.shape == (6, 3, 16, 16) and train.labels.sum() == 0 and train.masks.sum() == 0
    test = load_mvtec(mvtec, "test", 16)
    assert len(test) == 2 + 4 + 2 + 2
    assert test.kinds.count("good") == 4 and test.kinds.count("scratch") == 2 and test.kinds.count("bent") == 2
    assert torch.equal(test.labels, torch.tensor([int(k != "good") for k in test.kinds]))
    defect = test.labels == 1
    assert torch.allclose(test.masks[defect].mean((1, 2, 3)), torch.tensor(0.5))  # left half, resized
    assert (test.masks[defect][:, :, :, :8] == 1).all() and (test.masks[~defect] == 0).all()
    assert set(test.masks.unique().tolist()) == {0.0, 1.0}
    assert 0 <= test.images.min() and test.images.max() <= 1 and test.images.dtype == torch.float32
    one = load_mvtec(mvtec, "test", 16, category="grid")
    assert one.category_names == ["grid"] and len(one) == 4 and one.paths[0].endswith("grid/test/bent/000.png")


def test_mvtec_resize_is_bilinear_from_the_file(mvtec):
    s = load_mvtec(mvtec, "train", 30, category="bottle")
    original = np.array(Image.open(mvtec / "bottle/train/good/000.png").resize((30, 30), Image.BILINEAR))
    assert torch.allclose(s.images[0], torch.from_numpy(original).permute(2, 0, 1).float() / 255)


def test_folder_loader(tmp_path):
    make_mvtec_category(tmp_path / "my_parts", kinds=("dent",), n=3)
    s = load_folder(tmp_path / "my_parts", "test", 24)
    assert s.category_names == ["my_parts"] and len(s) == 5 and s.kinds.count("dent") == 3
    assert load_folder(tmp_path / "my_parts", "train", 24, category="widget").category_names == ["widget"]
    assert load_dataset("folder", tmp_path / "my_parts", "train", 24).images.shape == (3, 3, 24, 24)


@pytest.fixture
def btad(tmp_path):
    for cat, image_ext, mask_ext in (("01", ".bmp", ".png"), ("02", ".png", ".bmp")):
        for i in range(3):
            _image(tmp_path / cat / "train" / "ok" / f"{i:04d}{image_ext}", seed=i)
        _image(tmp_path / cat / "test" / "ok" / f"0100{image_ext}")
        for i in range(2):
            _image(tmp_path / cat / "test" / "ko" / f"02{i:02d}{image_ext}")
            _mask(tmp_path / cat / "ground_truth" / "ko" / f"02{i:02d}{mask_ext}")
    return tmp_path


def test_btad_loader(btad):
    train = load_btad(btad, "train", 16)
    assert train.category_names == ["01", "02"] and len(train) == 6 and set(train.kinds) == {"good"}
    test = load_btad(btad, "test", 16, category="02")
    assert test.kinds == ["good", "ko", "ko"] and test.labels.tolist() == [0, 1, 1]
    assert test.masks[0].sum() == 0 and torch.allclose(test.masks[1:].mean((1, 2, 3)), torch.tensor(0.5))
    assert len(load_dataset("btad", btad, "test", 16)) == 6


def make_mtsd(root: Path, n_free=10, defects=(("Blowhole", 3), ("Crack", 2))):
    for i in range(n_free):
        size = (30 + i, 20 + i % 3)  # varying sizes, like the real data
        _image(root / "MT_Free" / "Imgs" / f"free_{i:02d}.jpg", size=size, mode="L", seed=i)
        Image.new("L", size).save(root / "MT_Free" / "Imgs" / f"free_{i:02d}.png")  # empty masks
    for name, n in defects:
        for i in range(n):
            _image(root / f"MT_{name}" / "Imgs" / f"{name}_{i}.jpg", mode="L", seed=50 + i)
            _mask(root / f"MT_{name}" / "Imgs" / f"{name}_{i}.png")
    return root


def test_mtsd_loader_and_split(tmp_path):
    root = make_mtsd(tmp_path)
    train, test = load_mtsd(root, "train", 16), load_mtsd(root, "test", 16)
    assert len(train) == 8 and len(test) == 2 + 5
    assert train.category_names == test.category_names == ["magnetic_tile"]
    assert sorted(set(test.kinds)) == ["Blowhole", "Crack", "good"] and test.labels.sum() == 5
    assert torch.equal(test.images[:, 0], test.images[:, 1])  # greyscale replicated to RGB
    assert (test.masks[test.labels == 1].mean((1, 2, 3)) == 0.5).all() and test.masks[test.labels == 0].sum() == 0
    # the split: deterministic, disjoint, complete, recorded
    split = mtsd_split(root, seed=0)
    assert split == mtsd_split(root, seed=0)
    free = {p for p in split["train"] + split["test"] if p.startswith("MT_Free")}
    assert len(free) == 10 and not set(split["train"]) & set(split["test"])
    assert [str(root / p) for p in split["train"]] == train.paths
    assert [str(root / p) for p in split["test"]] == test.paths
    other = mtsd_split(root, seed=1)
    assert other["train"] != split["train"] and len(other["train"]) == 8
    assert len(mtsd_split(root, test_fraction=0.5)["train"]) == 5
    assert len(load_dataset("mtsd", root, "train", 16, seed=1)) == 8


@pytest.mark.skipif(not REAL_MTSD.is_dir(), reason="real MTSD not present")
def test_real_mtsd():
    n_free = len(list((REAL_MTSD / "MT_Free" / "Imgs").glob("*.jpg")))
    defect_dirs = sorted(p for p in REAL_MTSD.glob("MT_*") if p.name != "MT_Free")
    n_defect = sum(len(list((p / "Imgs").glob("*.jpg"))) for p in defect_dirs)
    split = mtsd_split(REAL_MTSD, seed=0, test_fraction=0.2)
    assert len(split["train"]) == n_free - round(0.2 * n_free)
    assert len(split["test"]) == round(0.2 * n_free) + n_defect
    test = load_mtsd(REAL_MTSD, "test", 64)  # at 32 px nearest resizing erases some tiny masks
    assert len(test) == len(split["test"]) and int(test.labels.sum()) == n_defect
    assert set(test.kinds) == {"good"} | {p.name[3:] for p in defect_dirs}
    area = test.masks.mean((1, 2, 3))
    assert (area[test.labels == 1] > 0).all() and (area[test.labels == 0] == 0).all()


# ---------------------------------------------------------------------------------------------
# Errors: each a one-line DataError naming what is wrong
# ---------------------------------------------------------------------------------------------

def _raises(match, fn, *args, **kwargs):
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_error_missing_root(tmp_path):
    for loader in (load_mvtec, load_btad, load_folder):
        _raises("nope.*does not exist", loader, tmp_path / "nope", "train", 16)
    _raises("nope.*does not exist", load_mtsd, tmp_path / "nope", "train", 16)
    _raises("needs a root", load_dataset, "mvtec", None, "train", 16)


def test_error_wrong_layout(tmp_path, mvtec):
    (tmp_path / "empty").mkdir()
    _raises("has no category folders with train/good", load_mvtec, tmp_path / "empty", "train", 16)
    _raises("has no category folders with train/ok", load_btad, mvtec, "train", 16)  # mvtec is not btad
    _raises("missing MT_Free/Imgs", load_mtsd, mvtec, "train", 16)
    _raises("no train/good", load_folder, tmp_path / "empty", "train", 16)
    import shutil
    shutil.rmtree(mvtec / "grid" / "test")
    _raises("missing folder .*grid/test", load_mvtec, mvtec, "test", 16)


def test_error_corrupt_images(mvtec):
    bad = mvtec / "bottle" / "train" / "good" / "000.png"
    bad.write_bytes(b"this is not a png")
    _raises("cannot read image .*000.png", load_mvtec, mvtec, "train", 16)
    # a truncated PNG and a truncated JPEG: PIL must actually decode them to notice
    _image(bad, size=(64, 64))
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    _raises("cannot read image .*000.png.*truncated", load_mvtec, mvtec, "train", 16)


def test_error_truncated_jpeg(tmp_path):
    root = make_mtsd(tmp_path)
    jpg = root / "MT_Free" / "Imgs" / "free_03.jpg"
    _image(jpg, size=(200, 150), mode="L")
    jpg.write_bytes(jpg.read_bytes()[:600])
    message = _raises("cannot read image", lambda: [load_mtsd(root, s, 16) for s in ("train", "test")])
    assert "free_03.jpg" in message


def test_error_missing_and_mismatched_masks(mvtec, btad, tmp_path):
    (mvtec / "bottle" / "ground_truth" / "hole" / "001_mask.png").unlink()
    _raises("no mask for defect image .*bottle/test/hole/001.png", load_mvtec, mvtec, "test", 16)
    (btad / "01" / "ground_truth" / "ko" / "0200.png").unlink()
    _raises("no mask for defect image .*0200.bmp", load_btad, btad, "test", 16)
    _mask(btad / "01" / "ground_truth" / "ko" / "0200.png", size=(31, 20))
    message = _raises("31x20.*30x20", load_btad, btad, "test", 16)
    assert "0200.png" in message
    root = make_mtsd(tmp_path / "mtsd")
    (root / "MT_Crack" / "Imgs" / "Crack_1.png").unlink()
    _raises("no mask for defect image .*Crack_1.jpg", load_mtsd, root, "test", 16)


def test_error_empty_class_folder(mvtec):
    (mvtec / "bottle" / "test" / "crack").mkdir()
    _raises("empty folder .*bottle/test/crack", load_mvtec, mvtec, "test", 16)
    for p in (mvtec / "grid" / "train" / "good").iterdir():
        p.unlink()
    _raises("empty folder .*grid/train/good", load_mvtec, mvtec, "train", 16)


def test_error_unknown_category_dataset_split(mvtec, btad):
    _raises("unknown mvtec category 'wood'.*known: bottle, grid", load_mvtec, mvtec, "train", 16, category="wood")
    _raises("unknown btad category '04'.*known: 01, 02", load_btad, btad, "train", 16, category="04")
    _raises("unknown synthetic category", load_dataset, "synthetic", None, "train", 16, category="wood")
    _raises("unknown dataset 'imagenet'.*synthetic, mvtec, btad, mtsd, folder", load_dataset, "imagenet", mvtec,
            "train", 16)
    _raises("split must be 'train' or 'test', got 'val'", load_mvtec, mvtec, "val", 16)
    _raises("split must be", load_dataset, "synthetic", None, "valid", 16)
    _raises("test_fraction", mtsd_split, make_mtsd(btad / "m"), 0, 1.5)


def test_load_dataset_synthetic():
    s = load_dataset("synthetic", "ignored", "test", 32, category="disc", seed=2)
    assert s.category_names == ["disc"] and len(s) == synthetic.TEST_PER_CATEGORY
    assert torch.equal(s.images[:3], make_synthetic("test", 32, ["disc"], seed=2).images[:3])


# ---------------------------------------------------------------------------------------------
# augment
# ---------------------------------------------------------------------------------------------

def test_augment_seeded_range_and_new_tensor():
    x = make_synthetic("train", size=32, num_per_category=4).images
    x[0] = 1.0  # extremes stay in range
    x[1] = 0.0
    before = x.clone()
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    c = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before) and a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().mean() > 0.01


def test_augment_flips(monkeypatch):
    import pvqae_lib.data.transforms as module
    monkeypatch.setattr(module, "JITTER", 0.0)  # flips only
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = augment(x, torch.Generator().manual_seed(5))
    seen = set()
    for xi, yi in zip(x, y):
        flips = {(h, v): xi.flip(-1) if h else xi for h in (0, 1) for v in (0, 1)}
        flips = {k: (f.flip(-2) if k[1] else f) for k, f in flips.items()}
        match = [k for k, f in flips.items() if torch.allclose(f, yi, atol=1e-6)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}
