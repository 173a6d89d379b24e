"""Rollout videos as mp4 (imageio-ffmpeg), at the environment's own frame rate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write ``frames`` (H, W, 3 uint8) to ``path`` atomically (temp file, then rename).

    Frame sides are padded to even sizes, which H.264 needs.
    """
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1)
    try:
        for frame in frames:
            writer.append_data(_even_sized(frame))
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def _even_sized(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
