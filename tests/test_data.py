"""Tests for colorjax.data: sources, decoding of every image mode, and the Grain loader."""

from __future__ import annotations

import io
import json
import logging
import socket

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata

from colorjax.data import (
    ACCEPTED_FORMS,
    Source,
    TfdsSource,
    decode_image,
    make_loader,
    make_source,
    preprocess_eval,
    preprocess_train,
    thumbnail_max_chroma,
)
from colorjax.errors import DataSourceError, ImageDecodeError, ShardingError

# ---------------------------------------------------------------- helpers


def _photo(h: int = 48, w: int = 40, which: str = "chelsea") -> np.ndarray:
    """A crop of a real colour photo from scikit-image's bundled data."""
    img = getattr(skdata, which)()
    return np.ascontiguousarray(img[100 : 100 + h, 150 : 150 + w, :3])


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _id_image(i: int, size: int = 12) -> np.ndarray:
    """A constant image whose colour encodes the record id (survives crops and resizes)."""
    return np.full((size, size + 3, 3), (i, 255 - i, 40), np.uint8)


def _ids(batch: dict) -> list[int]:
    rgb = batch["rgb"]
    assert rgb.dtype == np.uint8
    return [int(v) for v in rgb[:, 0, 0, 0]]


class ArraySource(Source):
    """In-memory source of id-coded arrays; entries listed in `gray` are gray photos."""

    def __init__(self, n: int, gray: tuple[int, ...] = ()):
        self.name = "ids"
        self.n = n
        self.gray = set(gray)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if i in self.gray:
            return np.full((12, 15, 3), 128, np.uint8)
        return _id_image(i)


# ---------------------------------------------------------------- decoding


def test_decode_rgb_png_and_inputs_are_lossless():
    rgb = _photo()
    png = _encode(Image.fromarray(rgb), "PNG")
    for given in (png, Image.open(io.BytesIO(png)), rgb):
        out = decode_image(given)
        assert out.dtype == np.uint8 and out.shape == rgb.shape
        np.testing.assert_array_equal(out, rgb)


def test_decode_grayscale_l_gives_three_equal_channels():
    gray = np.asarray(Image.fromarray(_photo()).convert("L"))
    out = decode_image(_encode(Image.fromarray(gray), "PNG"))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_decode_rgba_and_la_composite_over_white():
    rgb = _photo()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :10] = 0
    rgba = np.dstack([rgb, alpha])
    out = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[:, 10:], rgb[:, 10:])
    assert (out[:, :10] == 255).all()
    la = Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA")
    out_la = decode_image(_encode(la, "PNG"))
    np.testing.assert_array_equal(out_la[:, 10:, 1], rgb[:, 10:, 0])
    assert (out_la[:, :10] == 255).all()


def test_decode_palette_with_and_without_transparency():
    pal_img = Image.fromarray(_photo()).quantize(colors=16)
    palette = np.asarray(pal_img.getpalette(), np.uint8).reshape(-1, 3)
    expected = palette[np.asarray(pal_img)]
    np.testing.assert_array_equal(decode_image(_encode(pal_img, "PNG")), expected)
    transparent_index = int(np.asarray(pal_img)[0, 0])
    out = decode_image(_encode(pal_img, "PNG", transparency=transparent_index))
    mask = np.asarray(pal_img) == transparent_index
    assert (out[mask] == 255).all()
    np.testing.assert_array_equal(out[~mask], expected[~mask])


def test_decode_16bit_png_scales_instead_of_clipping():
    gray8 = np.asarray(Image.fromarray(_photo()).convert("L")).astype(np.uint16)
    gray16 = gray8 * 257
    png = _encode(Image.fromarray(gray16), "PNG")
    assert Image.open(io.BytesIO(png)).mode.startswith("I")
    out = decode_image(png)
    np.testing.assert_array_equal(out[..., 0], gray8.astype(np.uint8))
    # Arrays take the same path: uint16 and float inputs are scaled too.
    np.testing.assert_array_equal(decode_image(gray16)[..., 1], gray8)
    np.testing.assert_array_equal(decode_image(gray8 / 255.0)[..., 2], gray8)


def test_decode_cmyk_jpeg_is_close_to_the_original():
    rgb = _photo()
    jpg = _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(jpg)).mode == "CMYK"
    out = decode_image(jpg)
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 8


def test_decode_honours_exif_orientation():
    rgb = _photo(h=40, w=64)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    jpg = _encode(Image.fromarray(rgb), "JPEG", quality=95, exif=exif)
    out = decode_image(jpg)
    expected = np.rot90(rgb, k=-1)  # clockwise
    assert out.shape == expected.shape == (64, 40, 3)
    assert np.abs(out.astype(int) - expected).mean() < 6
    # Ignoring the tag would give the unrotated pixels, which differ a lot.
    unrotated = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB"))
    assert unrotated.shape == rgb.shape


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20,
        b"this is a text file, not a JPEG\n",
    ],
    ids=["empty", "corrupt", "text"],
)
def test_decode_bad_bytes_raise_image_decode_error(payload):
    with pytest.raises(ImageDecodeError):
        decode_image(payload)


def test_decode_truncated_jpeg_and_missing_file(tmp_path):
    jpg = _encode(Image.fromarray(_photo(96, 96)), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_image(jpg[: len(jpg) // 2])
    with pytest.raises(ImageDecodeError, match="not found"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError):
        decode_image(np.zeros((4, 4, 5), np.uint8))


def test_jpeg_draft_mode_downscales_but_keeps_enough_pixels():
    big = np.asarray(Image.fromarray(skdata.astronaut()).resize((1024, 1024)))
    jpg = _encode(Image.fromarray(big), "JPEG", quality=90)
    full = decode_image(jpg)
    drafted = decode_image(jpg, min_side=100)
    assert full.shape == (1024, 1024, 3)
    assert 100 <= drafted.shape[0] < 512
    # Same picture: compare after resizing both to a common size.
    a = np.asarray(Image.fromarray(full).resize((64, 64), Image.Resampling.BOX), np.int32)
    b = np.asarray(Image.fromarray(drafted).resize((64, 64), Image.Resampling.BOX), np.int32)
    assert np.abs(a - b).mean() < 4


# ---------------------------------------------------------------- preprocessing


def test_preprocess_eval_matches_resize_then_centre_crop():
    rgb = _photo(h=60, w=90)
    out = preprocess_eval(rgb, 32)
    # Independent reference: the two-step recipe with Pillow.
    resized = Image.fromarray(rgb).resize((48, 32), Image.Resampling.BILINEAR)
    ref = np.asarray(resized)[:, 8:40]
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref).mean() < 4


def test_preprocess_train_is_deterministic_and_varies_with_rng():
    rgb = _photo(h=80, w=80)
    a = preprocess_train(rgb, 32, np.random.default_rng([1, 2, 3]))
    b = preprocess_train(rgb, 32, np.random.default_rng([1, 2, 3]))
    c = preprocess_train(rgb, 32, np.random.default_rng([1, 2, 4]))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (32, 32, 3) and not np.array_equal(a, c)
    # A left-to-right ramp cropped at full size comes out mirrored when flipped.
    seen_flip = False
    for s in range(20):
        sym = np.tile(np.arange(32, dtype=np.uint8)[None, :, None], (32, 1, 3)) * 7
        out = preprocess_train(sym, 32, np.random.default_rng(s), scale=(1.0, 1.0), ratio=(1, 1))
        seen_flip |= bool(out[0, 0, 0] > out[0, -1, 0])
    assert seen_flip


def test_max_chroma_matches_skimage_lab():
    rgb = _photo(h=32, w=32)
    lab = skcolor.rgb2lab(rgb)
    expected = np.sqrt(lab[..., 1] ** 2 + lab[..., 2] ** 2).max()
    assert thumbnail_max_chroma(rgb) == pytest.approx(expected, rel=1e-3, abs=1e-2)
    assert thumbnail_max_chroma(np.full((8, 8, 3), 77, np.uint8)) < 0.5


# ---------------------------------------------------------------- sources


@pytest.fixture()
def photo_folder(tmp_path):
    """A folder of good photos in several formats plus every kind of bad file."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    good = {}
    rgb_a, rgb_b, rgb_c = _photo(), _photo(which="coffee"), _photo(which="astronaut")
    Image.fromarray(rgb_a).save(root / "a_good.png")
    Image.fromarray(rgb_b).save(root / "b_good.JPG", quality=95)
    Image.fromarray(rgb_c).save(root / "sub" / "c_good.webp", lossless=True)
    Image.fromarray(rgb_a).save(root / "sub" / "d_good.TIFF")
    Image.fromarray(rgb_b).save(root / "sub" / "e_good.bmp")
    Image.fromarray(rgb_a).convert("L").save(root / "f_gray.png")
    Image.fromarray(np.dstack([rgb_b, np.full(rgb_b.shape[:2], 200, np.uint8)])).save(
        root / "g_rgba.png"
    )
    Image.fromarray(rgb_c).quantize(8).save(root / "h_palette.png")
    gray16 = np.asarray(Image.fromarray(rgb_a).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray16).save(root / "i_16bit.png")
    Image.fromarray(rgb_b).convert("CMYK").save(root / "j_cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb_c).save(root / "k_exif.jpeg", exif=exif)
    good = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    (root / "x_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x13" * 100)
    jpg = _encode(Image.fromarray(_photo(96, 96)), "JPEG", quality=90)
    (root / "x_truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "x_empty.jpg").write_bytes(b"")
    (root / "x_text.jpg").write_text("not an image\n")
    (root / "notes.txt").write_text("ignored: not an image extension\n")
    return root, good


def test_folder_source_lists_images_sorted(photo_folder):
    root, good = photo_folder
    src = make_source(f"folder:{root}")
    rel = [p[len(str(root)) + 1 :] for p in src.paths]
    assert rel == sorted(rel)
    assert set(rel) == set(good) | {"x_corrupt.png", "x_truncated.jpg", "x_empty.jpg", "x_text.jpg"}
    assert all(not p.endswith(".txt") for p in rel)


def test_folder_loader_skips_and_reports_bad_files(photo_folder, caplog):
    root, good = photo_folder
    src = make_source(f"folder:{root}")
    with caplog.at_level(logging.WARNING, logger="colorjax.data"):
        it = make_loader(
            src, batch_size=3, image_size=16, train=False, num_epochs=1, drop_remainder=False
        )
        batches = list(it)
    assert sum(b["rgb"].shape[0] for b in batches) == len(good)
    assert all(b["rgb"].shape[1:] == (16, 16, 3) for b in batches)
    assert [b["rgb"].shape[0] for b in batches[:-1]] == [3] * (len(batches) - 1)
    assert it.skipped_unreadable == 4
    warned = " ".join(r.getMessage() for r in caplog.records)
    for bad in ("x_corrupt.png", "x_truncated.jpg", "x_empty.jpg", "x_text.jpg"):
        assert bad in warned
    assert "skipped 4 unreadable" in warned


def test_folder_validation_split_is_disjoint_and_deterministic(photo_folder):
    root, _ = photo_folder
    spec = f"folder:{root}"
    all_paths = make_source(spec, split="all").paths
    train = make_source(spec, split="train", val_fraction=0.3, check=False).paths
    val = make_source(spec, split="validation", val_fraction=0.3, check=False).paths
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(all_paths)
    assert len(val) == round(0.3 * len(all_paths))
    assert val == make_source(spec, split="validation", val_fraction=0.3, check=False).paths
    other = make_source(spec, split="validation", val_fraction=0.3, seed=5, check=False).paths
    assert len(other) == len(val)


def test_source_errors_list_accepted_forms(tmp_path):
    for spec in ("s3://bucket", f"folder:{tmp_path / 'missing'}", "tfds:bad name!"):
        with pytest.raises(DataSourceError) as info:
            make_source(spec)
        assert "folder:PATH" in str(info.value) and "embedded" in str(info.value)
    assert "tfds:NAME" in ACCEPTED_FORMS
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no image files"):
        make_source(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_text("text")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    with pytest.raises(DataSourceError, match="no readable image"):
        make_source(f"folder:{tmp_path / 'bad'}")


def test_embedded_source_loads_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    src = make_source("embedded")
    assert len(src) >= 5
    it = make_loader(src, batch_size=2, image_size=32, train=True, seed=0)
    batch = next(it)
    assert batch["rgb"].shape == (2, 32, 32, 3)
    # Real colour photos: strongly chromatic pixels exist in each.
    assert all(thumbnail_max_chroma(decode_image(src[i])) > 30 for i in range(len(src)))


def test_tfds_source_reads_mock_data_through_data_source(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=9, policy=tfds.testing.MockPolicy.USE_CODE):
        src = make_source("tfds:oxford_flowers102", split="train")
        reference = tfds.data_source("oxford_flowers102", split="train")
        assert len(src) == len(reference) == 9
        it = make_loader(
            src, batch_size=4, image_size=16, train=False, num_epochs=1, drop_remainder=False
        )
        batches = list(it)
        got = np.concatenate([b["rgb"] for b in batches])
        expected = np.stack(
            [preprocess_eval(decode_image(reference[i]["image"]), 16) for i in range(9)]
        )
        np.testing.assert_array_equal(got, expected)
        train = make_loader(src, batch_size=4, image_size=16, train=True, seed=1)
        assert next(train)["rgb"].shape == (4, 16, 16, 3)


def test_tfds_records_may_hold_encoded_bytes_or_arrays():
    rgb = _photo(h=20, w=20)
    records = [{"image": _encode(Image.fromarray(rgb), "PNG")}, {"image": rgb[..., :1]}]
    src = TfdsSource("tfds:fake", "train", records, None)
    it = make_loader(src, batch_size=2, image_size=20, train=False, num_epochs=1)
    out = next(it)["rgb"]
    np.testing.assert_array_equal(out[0], rgb)
    np.testing.assert_array_equal(out[1], np.repeat(rgb[..., :1], 3, axis=-1))


def test_tfds_unprepared_or_unknown_gives_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataSourceError, match="tfds build oxford_flowers102"):
        make_source("tfds:oxford_flowers102", data_dir=tmp_path)
    with pytest.raises(DataSourceError, match="no data set named"):
        make_source("tfds:no_such_dataset_xyz", data_dir=tmp_path)


# ---------------------------------------------------------------- loader


@pytest.mark.parametrize("process_count", [2, 4])
def test_shards_are_disjoint_and_cover_everything(process_count):
    src = ArraySource(23)
    shards = []
    for p in range(process_count):
        it = make_loader(
            src,
            batch_size=2,
            image_size=8,
            train=True,
            seed=3,
            process_index=p,
            process_count=process_count,
            num_epochs=1,
            drop_remainder=False,
        )
        shards.append([i for b in it for i in _ids(b)])
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(23))  # disjoint (no duplicates) and covering
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1
    with pytest.raises(ShardingError):
        make_loader(src, batch_size=2, image_size=8, train=True, process_index=4, process_count=4)


def test_same_seed_same_batches_and_each_epoch_is_a_permutation():
    src = ArraySource(10)

    def run(seed):
        it = make_loader(src, batch_size=5, image_size=8, train=True, seed=seed, num_epochs=3)
        return [_ids(b) for b in it]

    a, b, c = run(0), run(0), run(1)
    assert a == b and a != c
    flat = [i for batch in a for i in batch]
    epochs = [flat[k * 10 : (k + 1) * 10] for k in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]  # reshuffled every epoch


def test_real_photos_same_seed_same_pixels():
    src = make_source("embedded")

    def first(seed, cache_mb=256.0):
        it = make_loader(
            src, batch_size=3, image_size=24, train=True, seed=seed, decode_cache_mb=cache_mb
        )
        return [next(it)["rgb"] for _ in range(5)]  # 15 records: every photo seen twice

    a, b, c = first(7), first(7, cache_mb=0.0), first(8)
    for x, y in zip(a, b, strict=True):  # the decode cache changes nothing
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_restoring_state_gives_the_same_next_batch(photo_folder):
    root, _ = photo_folder
    src = make_source(f"folder:{root}")
    kwargs = dict(batch_size=4, image_size=16, train=True, seed=11, drop_gray_threshold=2.0)
    reference = make_loader(src, **kwargs)
    expected = [next(reference)["rgb"] for _ in range(7)]  # crosses epoch boundaries
    for k in (0, 3, 5):
        it = make_loader(src, **kwargs)
        for _ in range(k):
            next(it)
        state = json.loads(json.dumps(it.get_state()))  # must survive a JSON checkpoint
        resumed = make_loader(src, **kwargs)
        resumed.set_state(state)
        np.testing.assert_array_equal(next(resumed)["rgb"], expected[k])
        np.testing.assert_array_equal(next(resumed)["rgb"], expected[k + 1])


def test_drop_gray_threshold_skips_gray_photos_and_keeps_batches_full():
    src = ArraySource(12, gray=(1, 4, 5, 9))
    it = make_loader(
        src, batch_size=4, image_size=8, train=False, num_epochs=1, drop_gray_threshold=5.0
    )
    batches = list(it)
    ids = [i for b in batches for i in _ids(b)]
    assert sorted(ids) == [0, 2, 3, 6, 7, 8, 10, 11]
    assert all(b["rgb"].shape[0] == 4 for b in batches)
    assert it.skipped_gray == 4 and it.skipped_unreadable == 0


def test_all_gray_shard_is_a_clear_error():
    it = make_loader(
        ArraySource(3, gray=(0, 1, 2)),
        batch_size=2,
        image_size=8,
        train=True,
        drop_gray_threshold=5.0,
    )
    with pytest.raises(DataSourceError, match="no usable image"):
        next(it)


@pytest.mark.parametrize("worker_type", ["thread", pytest.param("process", marks=pytest.mark.slow)])
def test_workers_are_deterministic_and_resumable(worker_type, tmp_path):
    # A folder source: worker processes then need not import this test module.
    for i in range(9):
        Image.fromarray(_id_image(i)).save(tmp_path / f"{i:02d}.png")
    src = make_source(f"folder:{tmp_path}")
    kwargs = dict(
        batch_size=2, image_size=8, train=True, seed=5, num_workers=2, worker_type=worker_type
    )
    # Two loaders only: each process-worker start costs seconds on a 2-core machine.
    with make_loader(src, **kwargs) as it:
        first = [_ids(next(it)) for _ in range(6)]
        state = json.loads(json.dumps(it.get_state()))
        expected_next = [_ids(next(it)) for _ in range(3)]
    ids = [i for batch in first[:4] for i in batch]
    assert len(set(ids)) == 8  # the first 8 of a 9-record epoch: no repeats across workers
    with make_loader(src, **kwargs) as resumed:
        resumed.set_state(state)
        assert [_ids(next(resumed)) for _ in range(3)] == expected_next
    if worker_type == "thread":  # threads keep the exact single-threaded order
        sync = make_loader(src, **{**kwargs, "num_workers": 0})
        assert [_ids(next(sync)) for _ in range(6)] == first


def test_data_cli_check_lists_unreadable_files(photo_folder, capsys):
    import argparse

    from colorjax.cli import data as cli

    root, good = photo_folder
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    args = parser.parse_args([f"folder:{root}", "--json", "--gray-threshold", "2"])
    assert cli.run(args) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == len(good) + 4
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in report["unreadable"]) == [
        "x_corrupt.png",
        "x_empty.jpg",
        "x_text.jpg",
        "x_truncated.jpg",
    ]
    gray = sorted(p.rsplit("/", 1)[-1] for p in report["near_gray"])
    assert gray == ["f_gray.png", "i_16bit.png"]
