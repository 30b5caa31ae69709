"""Mask / frame I/O: the DAVIS palette, round trips, and every wrong mask format refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from isvos_lite.data.palette import (DAVIS_PALETTE, check_same_size, colorize_mask, convert_rgb_mask, read_frame,
                                     read_mask, write_frame, write_mask)


def _ids(h=24, w=32):
    mask = np.zeros((h, w), np.uint8)
    mask[2:10, 3:12] = 1
    mask[12:20, 15:30] = 2
    mask[0:4, 28:32] = 7
    return mask


def test_palette_is_the_voc_colormap():
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    expected = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
                (128, 128, 128), (64, 0, 0), (192, 0, 0)]
    assert [tuple(c) for c in DAVIS_PALETTE[:10].tolist()] == expected
    assert tuple(DAVIS_PALETTE[255]) == (224, 224, 192)    # VOC's "void" colour
    assert len({tuple(c) for c in DAVIS_PALETTE.tolist()}) == 256


def test_write_read_round_trip_is_a_palette_png(tmp_path):
    mask = _ids()
    path = write_mask(tmp_path / "sub" / "00000.png", mask)
    image = Image.open(path)
    assert image.mode == "P"
    assert np.array_equal(np.array(image.getpalette()[:30]).reshape(-1, 3), DAVIS_PALETTE[:10])
    assert np.array_equal(read_mask(path), mask)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["00000.png"]   # no temp file left behind
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)                      # normal permissions


def test_grayscale_ids_are_read_and_binary_option(tmp_path):
    mask = _ids()
    Image.fromarray(mask, "L").save(tmp_path / "gray.png")
    assert np.array_equal(read_mask(tmp_path / "gray.png"), mask)
    Image.fromarray((mask > 0).astype(np.uint8) * 255, "L").save(tmp_path / "binary255.png")
    assert np.array_equal(read_mask(tmp_path / "binary255.png", binary=True), (mask > 0).astype(np.uint8))
    Image.fromarray(mask > 0).convert("1").save(tmp_path / "bilevel.png")
    assert np.array_equal(read_mask(tmp_path / "bilevel.png"), (mask > 0).astype(np.uint8))


def test_rgb_mask_is_refused_with_a_fix_and_convert_rgb_mask_fixes_it(tmp_path):
    mask = _ids()
    Image.fromarray(colorize_mask(mask)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png.*colour \(RGB\).*convert_rgb_mask"):
        read_mask(tmp_path / "rgb.png")
    Image.fromarray(colorize_mask(mask)).convert("RGBA").save(tmp_path / "rgba.png")
    with pytest.raises(ValueError, match=r"rgba\.png.*RGBA"):
        read_mask(tmp_path / "rgba.png")
    mapping = convert_rgb_mask(tmp_path / "rgb.png", tmp_path / "fixed.png")
    assert np.array_equal(read_mask(tmp_path / "fixed.png"), mask)            # palette colours keep their ids
    assert mapping[(128, 0, 0)] == 1 and mapping[(0, 0, 0)] == 0


def test_convert_rgb_mask_numbers_unknown_colours_by_size(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:6] = (255, 255, 0)        # the larger non-palette region -> id 1
    rgb[8:, :2] = (0, 255, 255)    # the smaller -> id 2
    Image.fromarray(np.kron(rgb, np.ones((8, 8, 1), np.uint8))).save(tmp_path / "mine.png")   # 8x8 px per cell
    convert_rgb_mask(tmp_path / "mine.png", tmp_path / "ids.png")
    ids = read_mask(tmp_path / "ids.png")[::8, ::8]
    assert set(np.unique(ids[:6])) == {1} and set(np.unique(ids[8:, :2])) == {2} and ids[7, 5] == 0


def test_antialiased_mask_is_refused_unless_allowed(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    soft = np.clip(200 - np.hypot(yy - 32, xx - 32) * 8, 0, 200).astype(np.uint8)   # blurred disc, many grey levels
    Image.fromarray(soft, "L").save(tmp_path / "soft.png")
    with pytest.raises(ValueError, match=r"soft\.png.*anti-aliased"):
        read_mask(tmp_path / "soft.png")
    assert len(np.unique(read_mask(tmp_path / "soft.png", allow_many_ids=True))) > 32
    binary = read_mask(tmp_path / "soft.png", binary=True)
    assert binary[32, 32] == 1 and binary[0, 0] == 0


def test_value_255_is_refused(tmp_path):
    mask = _ids()
    mask[0, 0] = 255
    write_mask(tmp_path / "void.png", mask)
    with pytest.raises(ValueError, match=r"void\.png.*255.*binary=True"):
        read_mask(tmp_path / "void.png")


def test_missing_empty_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_mask(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png.*zero-byte"):
        read_mask(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    with pytest.raises(ValueError, match=r"junk\.jpg.*corrupt"):
        read_frame(tmp_path / "junk.jpg")
    good = tmp_path / "good.png"
    write_mask(good, _ids())
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"truncated\.png.*corrupt"):
        read_mask(tmp_path / "truncated.png")
    with pytest.raises(ValueError, match="directory"):
        read_frame(tmp_path)


def test_read_frame_converts_to_rgb(tmp_path):
    rgb = (np.arange(24 * 32 * 3) % 251).astype(np.uint8).reshape(24, 32, 3)
    write_frame(tmp_path / "f.png", rgb)
    assert np.array_equal(read_frame(tmp_path / "f.png"), rgb)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "g.png")
    gray = read_frame(tmp_path / "g.png")
    assert gray.shape == (24, 32, 3) and np.array_equal(gray[..., 1], rgb[..., 0])
    Image.fromarray(np.dstack([rgb, np.full((24, 32), 255, np.uint8)]), "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_frame(tmp_path / "a.png"), rgb)
    write_frame(tmp_path / "f.jpg", rgb)
    assert read_frame(tmp_path / "f.jpg").shape == (24, 32, 3)


def test_size_mismatch_names_both_files():
    with pytest.raises(ValueError, match=r"m\.png is 10x5.*f\.jpg is 12x6.*nearest"):
        check_same_size(np.zeros((6, 12, 3)), np.zeros((5, 10)), "f.jpg", "m.png")


def test_write_mask_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        write_mask(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        write_mask(tmp_path / "x.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="0..255"):
        write_mask(tmp_path / "x.png", np.full((4, 4), 300))
    assert not list(tmp_path.iterdir())


def _two_objects(height=96, width=160):
    mask = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    mask[np.hypot(yy - 40, xx - 50) < 22] = 1
    mask[(yy > 50) & (yy < 85) & (xx > 90) & (xx < 140)] = 2
    mask[(yy > 30) & (yy < 60) & (xx > 68) & (xx < 100)] = 2          # touches object 1: a red/green seam
    return mask


@pytest.mark.parametrize("quality", [95, 50, 20])
def test_convert_rgb_mask_snaps_jpeg_noise_to_the_objects(tmp_path, quality):
    mask = _two_objects()
    Image.fromarray(colorize_mask(mask)).save(tmp_path / "mask.jpg", quality=quality)
    colours = np.unique(np.asarray(Image.open(tmp_path / "mask.jpg").convert("RGB")).reshape(-1, 3), axis=0)
    assert len(colours) > 30                                         # what exact-colour conversion turned into ids
    mapping = convert_rgb_mask(tmp_path / "mask.jpg", tmp_path / "ids.png")
    ids = read_mask(tmp_path / "ids.png")
    assert sorted(mapping.values()) == [0, 1, 2]                     # palette colours keep their ids
    for k in (1, 2):
        iou = ((ids == k) & (mask == k)).sum() / ((ids == k) | (mask == k)).sum()
        assert iou > 0.9, (k, iou)


def test_convert_rgb_mask_makes_a_white_on_black_jpeg_object_1(tmp_path):
    mask = _two_objects() > 0
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(tmp_path / "binary.jpg", quality=70)
    convert_rgb_mask(tmp_path / "binary.jpg", tmp_path / "ids.png")
    ids = read_mask(tmp_path / "ids.png")
    assert set(np.unique(ids)) == {0, 1} and (ids.astype(bool) == mask).mean() > 0.98


def test_convert_rgb_mask_refuses_implausibly_many_or_tiny_objects(tmp_path):
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)                  # a "photo": 240 flat colour blocks
    Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), np.uint8))).save(tmp_path / "photo.png")
    with pytest.raises(ValueError, match=r"photo\.png: its \d+ colours snap to \d+.*more than max_objects=10.*convert-mask --max-objects"):
        convert_rgb_mask(tmp_path / "photo.png", tmp_path / "ids.png")
    speck = colorize_mask(_two_objects())
    speck[5:10, 5:10] = (0, 0, 128)                                              # a 25-pixel object 4
    Image.fromarray(speck).save(tmp_path / "speck.png")
    with pytest.raises(ValueError, match=r"speck\.png.*1 of the 3 objects are tiny \(id 4: 25 px"):
        convert_rgb_mask(tmp_path / "speck.png", tmp_path / "ids.png", min_object_pixels=50)
    assert not (tmp_path / "ids.png").exists()
    convert_rgb_mask(tmp_path / "speck.png", tmp_path / "ids.png")              # default: 0.02 % of the image
    assert set(np.unique(read_mask(tmp_path / "ids.png"))) == {0, 1, 2, 4}


@pytest.mark.parametrize("kind", ["rgb", "binary255", "antialiased"])
def test_mask_error_hints_name_a_command_that_exists(tmp_path, kind):
    # the command a read_mask error suggests parses with the real CLI, and running it fixes the mask
    import re
    import shlex
    from isvos_lite.cli import build_parser, main
    mask = _two_objects()
    path = tmp_path / f"{kind}.png"
    if kind == "rgb":
        Image.fromarray(colorize_mask(mask)).save(path)
    elif kind == "binary255":
        Image.fromarray((mask > 0).astype(np.uint8) * 255, "L").save(path)
    else:
        yy, xx = np.mgrid[0:64, 0:64]
        Image.fromarray(np.clip(200 - np.hypot(yy - 32, xx - 32) * 8, 0, 200).astype(np.uint8), "L").save(path)
    with pytest.raises(ValueError) as caught:
        read_mask(path)
    suggested = re.search(r"`isvos-lite (convert-mask [^`]+)`", str(caught.value))
    assert suggested, str(caught.value)
    argv = shlex.split(suggested.group(1))
    build_parser(only="convert-mask").parse_args(argv)                          # every option exists
    assert main(argv) == 0
    assert len(np.unique(read_mask(path.with_name(f"{kind}_ids.png")))) >= 2
