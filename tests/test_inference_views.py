"""Test-time augmentation and the object-id table: properties that random weights can check exactly.

* TTA (Table 5): the independent protocol must equal the average of separate passes, one per view, with the
  flipped pass run on the mirrored video and its probabilities mirrored back (XMem's --flip + merge). A flipped
  view that is not flipped back, or a memory written from the wrong prediction, breaks the equality.
* Object ids: the segmenter's channels follow the order in which objects appear, not their numeric order.
  Renaming the ids must not change the masks (up to the renaming), also when a smaller id appears later.
"""

import numpy as np
import pytest
import torch

from isvos_lite.inference import VideoSegmenter
from isvos_lite.inference.views import encode_view, from_view, to_view


def _video(T=6, H=64, W=112, seed=0):
    """Noise frames with a bright blob moving right; W=112 pads by 8 + 8, so padding is mirror-symmetric."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(T):
        frame = (rng.random((H, W, 3)) * 120).astype(np.uint8)
        frame[10:40, 10 + 6 * t: 40 + 6 * t] = 230
        frames.append(frame)
    mask = np.zeros((H, W), np.uint8)
    mask[10:40, 10:40] = 4
    mask[45:60, 70:105] = 9                    # asymmetric layout: a missing un-flip cannot cancel out
    return frames, mask


def _run(model, frames, masks_at, **kwargs):
    seg = VideoSegmenter(model, mem_every=1, **kwargs)
    return seg, [seg.step(f, masks_at.get(t)) for t, f in enumerate(frames)]


@pytest.mark.parametrize("tta", ["independent", "online"])
def test_flip_view_equals_a_pass_on_the_mirrored_video_flipped_back(tiny_model, tta):
    frames, mask = _video()
    _, plain = _run(tiny_model, frames, {0: mask})
    _, mirrored = _run(tiny_model, [f[:, ::-1].copy() for f in frames], {0: mask[:, ::-1].copy()})
    _, both = _run(tiny_model, frames, {0: mask}, flip=True, tta=tta)
    # frame 1 reads a memory written from the given mask only, so both protocols agree there
    frames_to_check = range(1, len(frames)) if tta == "independent" else [1]
    for t in frames_to_check:
        expected = (plain[t] + mirrored[t].flip(-1)) / 2
        torch.testing.assert_close(both[t], expected, atol=2e-5, rtol=0)
    # the mirrored pass really is different (else the check above could not see a missing un-flip)
    assert (plain[1] - mirrored[1].flip(-1)).abs().max() > 1e-3
    assert (plain[1] - mirrored[1]).abs().max() > 1e-3


def test_online_ensemble_writes_memory_from_the_average(tiny_model):
    frames, mask = _video()
    seg_ind, independent = _run(tiny_model, frames, {0: mask}, flip=True, tta="independent")
    seg_onl, online = _run(tiny_model, frames, {0: mask}, flip=True, tta="online")
    torch.testing.assert_close(online[1], independent[1])                       # same memory so far
    # frame 1 was written to memory: from the average (online) or from each view's own prediction (independent)
    for view in range(2):
        online_value = seg_onl.streams[view].memory.slots[1].value
        own_value = seg_ind.streams[view].memory.slots[1].value
        assert (online_value - own_value).abs().max() > 1e-4


def test_multiscale_views_average_to_a_distribution(tiny_model):
    frames, mask = _video(T=3)
    seg, probs = _run(tiny_model, frames, {0: mask}, flip=True, scales=(1.0, 0.75))
    assert len(seg.streams) == 4
    for p in probs:
        torch.testing.assert_close(p.sum(0), torch.ones(p.shape[1:]))
    with pytest.raises(ValueError, match="independent"):
        VideoSegmenter(tiny_model, tta="mean")


def test_unflip_round_trip_of_a_flipped_view(tiny_model):
    frames, _ = _video(T=1)
    seg = VideoSegmenter(tiny_model, flip=True)
    stream = seg.streams[1]
    assert stream.flip
    enc = encode_view(seg.model, stream, torch.from_numpy(frames[0]).permute(2, 0, 1).float() / 255, 1.0, seg.device)
    masks = torch.zeros(2, 64, 112)
    masks[0, 5:20, 3:30] = 1
    masks[1, 30:60, 80:110] = 0.5
    view = to_view(stream, enc, masks, seg.device)                              # (1, 2, 64, 128) mirrored + padded
    assert view[0, 0, 5:20, 128 - 8 - 30: 128 - 8 - 3].min() == 1             # mirrored about the vertical axis
    torch.testing.assert_close(from_view(stream, enc, view, 64, 112), masks)


# ---------------------------------------------------------------------------------------------- object ids
def test_smaller_id_appearing_later_keeps_its_object(tiny_model):
    """Ids 9 (frame 0) then 2 (frame 2): the channels follow appearance order, and the result equals a run with
    ascending ids (9 -> 1, 2 -> 5) after renaming back."""
    frames, mask = _video(T=7)
    first = np.where(mask == 9, 9, 0).astype(np.uint8)
    late = np.zeros_like(mask)
    late[10:35, 70:100] = 2
    seg, probs = _run(tiny_model, frames, {0: first, 2: late})
    assert seg.object_ids == [9, 2]
    out = [seg.probs_to_mask(p) for p in probs]
    assert np.all(out[2][late == 2] == 2)
    assert (out[2] == 9).any()                                 # 9 survives the frame where 2 is given

    rename = np.zeros(256, np.uint8)
    rename[9], rename[2] = 1, 5                                # ascending in order of appearance
    seg_r, probs_r = _run(tiny_model, frames, {0: rename[first], 2: rename[late]})
    assert seg_r.object_ids == [1, 5]
    for t, (a, b) in enumerate(zip(probs, probs_r)):
        torch.testing.assert_close(a, b, msg=f"frame {t}: renaming the ids changed the probabilities")
        np.testing.assert_array_equal(rename[out[t]], seg_r.probs_to_mask(b))
