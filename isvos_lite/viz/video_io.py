"""Overlay videos: frames with their masks blended on top, written as browser-playable mp4 and checked on the way out.

The overlay grammar is the course's (``isvos_lite.viz.overlay_mask``): by default each object's outline in the
contrast palette's colour with a white rim (``style="outline"``); ``style="fill"`` blends the colour at alpha 0.6
with a contour in the full colour; ``palette="davis"`` uses the DAVIS palette of the mask files. Videos are encoded as **H.264** (yuv420p, ``+faststart``) with the ffmpeg
binary that the ``imageio-ffmpeg`` wheel ships, so they play in every browser, in JupyterLab and inline in a
notebook (:func:`video_html`). Without it (or with ``codec="mp4v"``) OpenCV's ``mp4v`` (MPEG-4 part 2) encoder,
which every opencv-python wheel has, is the fallback: desktop players show it, browsers do not.

Frames go into a temporary file next to the target; on ``close`` the file is read back with OpenCV (frame count
and size must match what was written), given the usual permissions (0666 minus the umask) and only then renamed into
place. A crash, a failed check or an exception inside ``with`` leaves no video behind. Both encoders need even frame
sizes, so frames with an odd height or width are padded by one replicated row / column at the bottom / right.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from isvos_lite.viz.overlays import overlay_mask

__all__ = ["OverlayVideoWriter", "write_overlay_video", "read_video_info", "video_codec", "video_html", "h264_available",
           "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")
FOURCC = "mp4v"                  # the OpenCV fallback
CODECS = ("auto", "h264", "mp4v")
H264_CRF = 20                    # x264 constant rate factor: 18-23 looks like the source at a few hundred kB


def h264_available() -> bool:
    """True when imageio-ffmpeg and its bundled ffmpeg binary are there (the H.264 encoder)."""
    try:
        import imageio_ffmpeg
        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError, OSError):
        return False
    return True


class OverlayVideoWriter:
    """Write frames with masks overlaid to an mp4, atomically; use as a context manager.

    >>> with OverlayVideoWriter("out.mp4", fps=24) as video:
    ...     for frame, mask in zip(frames, masks):
    ...         video.write(frame, mask)          # (H, W, 3) uint8 RGB, (H, W) ids (or None: the frame alone)
    """

    def __init__(self, path: str | os.PathLike, fps: float = 24.0, alpha: float = 0.6, contour: bool = True,
                 codec: str = "auto", style: str = "outline", palette: str | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"overlay video {self.path} must end in one of {', '.join(VIDEO_SUFFIXES)} "
                             f"(it is an mp4 file, H.264 or MPEG-4)")
        if codec not in CODECS:
            raise ValueError(f"overlay video {self.path}: codec must be one of {', '.join(CODECS)}, got {codec!r}")
        if codec == "h264" and not h264_available():
            raise RuntimeError(f"overlay video {self.path}: the H.264 encoder needs imageio-ffmpeg "
                               "(`pip install imageio-ffmpeg`, a dependency of isvos-lite); or use codec='mp4v'")
        # "h264": imageio-ffmpeg's ffmpeg (browsers play it); "mp4v": OpenCV (desktop players only)
        self.codec = "h264" if codec == "h264" or (codec == "auto" and h264_available()) else "mp4v"
        if self.path.is_dir():
            raise ValueError(f"overlay video {self.path} is a folder; pass a file name such as overlay.mp4")
        if not fps > 0:
            raise ValueError(f"overlay video fps must be > 0, got {fps}")
        self.fps, self.alpha, self.contour = float(fps), alpha, contour
        overlay_mask(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), style=style, palette=palette)  # checks
        self.style, self.palette = style, palette            # how masks are drawn (viz.overlays.overlay_mask)
        self.frames_written = 0
        self.size: tuple[int, int] | None = None            # (H, W) of the frames given
        self._writer = None                                  # cv2.VideoWriter, or the imageio-ffmpeg generator
        self._temp: Path | None = None

    # -- writing
    def write(self, frame: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Append one frame: (H, W, 3) uint8 RGB, with its (H, W) id mask overlaid when given."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"overlay video {self.path}: frames must be (H, W, 3) uint8 RGB, got "
                             f"{frame.shape} {frame.dtype}")
        if self.size is None:
            self._open(frame.shape[:2])
        elif frame.shape[:2] != self.size:
            raise ValueError(f"overlay video {self.path}: frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]} "
                             f"but the first frame is {self.size[1]}x{self.size[0]}; all frames need one size")
        image = (overlay_mask(frame, mask, alpha=self.alpha, contour=self.contour, style=self.style,
                              palette=self.palette) if mask is not None else frame)
        image = _pad_to_even(image)                                          # (H', W', 3), H', W' even
        if self.codec == "h264":
            self._writer.send(image.tobytes())                               # rgb24, row-major
        else:
            self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file, check that OpenCV reads it back, move it into place; returns the path."""
        if self._writer is None:
            raise ValueError(f"overlay video {self.path}: no frames were written")
        try:
            self._release()
            count, size, _ = read_video_info(self._temp)
            expected = _even_size(self.size)
            if count != self.frames_written or size != expected:
                raise RuntimeError(
                    f"overlay video {self.path}: wrote {self.frames_written} frames of {expected[1]}x{expected[0]} but "
                    f"OpenCV reads back {count} frames of {size[1]}x{size[0]}; the {self.codec} encoder of this "
                    "installation is broken - reinstall imageio-ffmpeg and opencv-python-headless from PyPI")
            os.chmod(self._temp, 0o666 & ~_umask())                 # mkstemp made it 0600
            os.replace(self._temp, self.path)
        except BaseException:
            self._discard()
            raise
        self._temp = None
        return self.path

    def abort(self) -> None:
        """Stop and delete the unfinished file (nothing is left at ``path``)."""
        try:
            self._release()
        except Exception:                        # the encoder may already be broken: the file goes anyway
            pass
        self._discard()

    def __enter__(self) -> "OverlayVideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals
    def _open(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))
        height, width = _even_size(self.size)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(handle)
        self._temp = Path(name)
        if self.codec == "h264":
            import imageio_ffmpeg
            self._writer = imageio_ffmpeg.write_frames(
                str(self._temp), (width, height), fps=self.fps, codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
                output_params=["-crf", str(H264_CRF), "-preset", "veryfast", "-movflags", "+faststart"])
            self._writer.send(None)                                           # start ffmpeg
            return
        self._writer = cv2.VideoWriter(str(self._temp), cv2.VideoWriter_fourcc(*FOURCC), self.fps, (width, height))
        if not self._writer.isOpened():
            self._discard()
            raise RuntimeError(f"overlay video {self.path}: OpenCV cannot open an {FOURCC} writer for {width}x{height} "
                               "frames; install opencv-python-headless from PyPI (it ships the encoder)")

    def _release(self) -> None:
        """Finish the encoder (ffmpeg writes the index; OpenCV flushes)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if self.codec == "h264":
            writer.close()
        else:
            writer.release()

    def _discard(self) -> None:
        if self._temp is not None and self._temp.exists():
            self._temp.unlink()
        self._temp = None


def write_overlay_video(path: str | os.PathLike, frames, masks=None, fps: float = 24.0, alpha: float = 0.6,
                        codec: str = "auto", style: str = "outline", palette: str | None = None) -> Path:
    """Write a whole overlay video at once: ``frames`` (H, W, 3) uint8 RGB, ``masks`` (H, W) ids or None each."""
    frames = list(frames)
    masks = [None] * len(frames) if masks is None else list(masks)
    if len(masks) != len(frames):
        raise ValueError(f"write_overlay_video: {len(frames)} frames but {len(masks)} masks")
    with OverlayVideoWriter(path, fps=fps, alpha=alpha, codec=codec, style=style, palette=palette) as video:
        for frame, mask in zip(frames, masks):
            video.write(frame, mask)
    return Path(path)


def read_video_info(path: str | os.PathLike) -> tuple[int, tuple[int, int], float]:
    """(decoded frame count, (H, W), fps) of a video, by decoding every frame with OpenCV."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"video {path} cannot be opened by OpenCV")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    count, size = 0, (0, 0)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            size = frame.shape[:2]
    finally:
        capture.release()
    return count, (int(size[0]), int(size[1])), fps


def video_codec(path: str | os.PathLike) -> str:
    """The FourCC OpenCV reports for a video, lower case: 'h264' / 'avc1' for H.264, 'mp4v' for MPEG-4 part 2."""
    capture = cv2.VideoCapture(str(path))
    try:
        code = int(capture.get(cv2.CAP_PROP_FOURCC))
    finally:
        capture.release()
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00").lower()


def video_html(path: str | os.PathLike, width: int = 640, title: str | None = None) -> str:
    """An HTML ``<video>`` element with the file embedded (base64), for ``IPython.display.HTML`` in a notebook.

    Embedding keeps the notebook self-contained (exported HTML plays too); the demo's videos are ~50 kB each.
    Browsers play H.264 only: an ``mp4v`` file (the OpenCV fallback) gets a note instead of a blank player.
    """
    import base64
    import html

    path = Path(path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = f"<div style='font-size:14px'>{html.escape(title)}</div>" if title else ""
    note = ""
    if video_codec(path) not in ("h264", "avc1"):
        note = ("<div style='color:#a00'>This file is MPEG-4 part 2 (OpenCV's fallback encoder): browsers cannot "
                "play it. `pip install imageio-ffmpeg` and write it again for H.264.</div>")
    return (f"<figure style='display:inline-block;margin:4px'>{caption}<video controls loop muted autoplay "
            f"width='{int(width)}' src='data:video/mp4;base64,{data}'></video>{note}</figure>")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _even_size(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] + size[0] % 2, size[1] + size[1] % 2


def _pad_to_even(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H + H%2, W + W%2, 3) by replicating the last row / column."""
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(image)
