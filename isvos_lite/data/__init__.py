"""Data: mask/frame I/O, the procedural teaching world, dataset readers, training samplers and augmentation.

Modules (one component each):

- ``palette``           DAVIS palette PNG masks and frames (read_mask / write_mask / read_frame)
- ``shapes``, ``world``  the teaching world's shape categories, textures, motion and rendering
- ``export``            writing the world in DAVIS 2017, COCO instance and YouTube-VOS layouts
- ``coco``              COCO polygon / RLE decoding and encoding
- ``sequences``         evaluation readers with one ``Sequence`` interface (DAVIS, YouTube-VOS, folder, mp4)
- ``sampling``          max-skip curriculum and clip frame sampling
- ``augment``           aligned frame/mask geometry, colour jitter, thin-plate-spline warp
- ``vos_dataset``       main-training clips (DAVIS / YouTube-VOS)
- ``static_dataset``    static images -> 3-frame pseudo-clips
- ``instance_dataset``  COCO instances for the IS branch
- ``instance_stream``   unlimited on-the-fly instance images of the teaching world (its "COCO") and their COCO export
- ``download``          official dataset URLs, checksums, resumable download and extraction
"""

from isvos_lite.data.palette import DAVIS_PALETTE, read_mask, write_mask, read_frame, write_frame, colorize_mask, convert_rgb_mask
from isvos_lite.data.shapes import SHAPE_CATEGORIES
from isvos_lite.data.world import WorldConfig
from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.sequences import Sequence, davis_sequences, youtube_sequences, folder_sequence, video_sequence
from isvos_lite.data.sampling import DEFAULT_SKIP_SCHEDULE, max_skip_at, sample_clip_indices
from isvos_lite.data.vos_dataset import VOSClipDataset
from isvos_lite.data.static_dataset import StaticClipDataset
from isvos_lite.data.instance_dataset import COCOInstanceDataset, collate_instances

__all__ = [
    "DAVIS_PALETTE", "read_mask", "write_mask", "read_frame", "write_frame", "colorize_mask", "convert_rgb_mask",
    "SHAPE_CATEGORIES", "WorldConfig", "WorldSizes", "generate_world",
    "Sequence", "davis_sequences", "youtube_sequences", "folder_sequence", "video_sequence",
    "DEFAULT_SKIP_SCHEDULE", "max_skip_at", "sample_clip_indices",
    "VOSClipDataset", "StaticClipDataset", "COCOInstanceDataset", "collate_instances",
]
