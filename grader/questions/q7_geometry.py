"""Image geometry for q7's preprocess checks: a test pattern, resizes and crops as the question asks, window search."""

from __future__ import annotations

import numpy as np

from ..flowers.pipeline import IMAGE_SIZE

SIZE = IMAGE_SIZE
PATTERN_SIZE = (300, 500)  # (height, width) of the test pattern: landscape, so the shorter side is the height


def pattern_image(height: int = PATTERN_SIZE[0], width: int = PATTERN_SIZE[1]) -> np.ndarray:
    """A smooth grey image whose every 224x224 window looks different (so a crop's position can be found)."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    waves = 55 * np.sin(rows / 19.0) + 45 * np.sin(cols / 27.0 + rows / 53.0) + 20 * np.cos(cols / 11.0 - rows / 71.0)
    grey = 127.5 + waves
    return np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` resized to height x width (bilinear, antialiased), as float64."""
    import keras

    out = keras.ops.image.resize(image.astype(np.float32), (height, width), interpolation="bilinear", antialias=True)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float64)


def shorter_side_to(image: np.ndarray, side: int) -> np.ndarray:
    """`image` resized so that its shorter side is `side`, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = side / min(height, width)
    return resize(image, max(side, round(height * scale)), max(side, round(width * scale)))


def centre(image: np.ndarray) -> np.ndarray:
    """The centre 224x224 crop of `image`."""
    top, left = (image.shape[0] - SIZE) // 2, (image.shape[1] - SIZE) // 2
    return image[top : top + SIZE, left : left + SIZE]


def rms(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean square difference of two arrays."""
    return float(np.sqrt(np.mean((a - b) ** 2)))


def best_window(big: np.ndarray, small: np.ndarray, step: int = 4) -> tuple[tuple[int, int], float]:
    """Where the 224x224 `small` best matches a window of `big` (RMS over a subsampled grid)."""
    sample = small[::step, ::step]
    best, where = np.inf, (0, 0)
    for top in range(big.shape[0] - SIZE + 1):
        for left in range(big.shape[1] - SIZE + 1):
            window = big[top : top + SIZE : step, left : left + SIZE : step]
            error = float(np.mean((window - sample) ** 2))
            if error < best:
                best, where = error, (top, left)
    return where, float(np.sqrt(best))
