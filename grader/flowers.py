"""The Oxford 102 flowers for q7: three ways to load them, the 50/25/25 split check, input pipelines.

Sources (`load_flowers`), looked for in this order when none is named:

1. the original archive: `102flowers.tgz` (or its extracted `jpg/` folder) with
   `imagelabels.mat`, in `$CNN_GRADER_DATA/oxford-flowers102/` (extracted there on first use);
2. an image folder with one sub-folder per class (the usual layout of
   `keras.utils.image_dataset_from_directory`), in `$CNN_GRADER_DATA/oxford-flowers102/images/`;
3. TensorFlow Datasets' `oxford_flowers102`, when already prepared in its data dir
   (`tfds build oxford_flowers102` or `load_flowers("tfds")`, which downloads).

All three yield the same thing: every image (8,189 for the real data set) with its class,
ignoring any split the source ships (TFDS's 1,020/1,020/6,149): q7 re-splits 50/25/25.

This module uses tf.data and TFDS and not only the Keras API, on purpose: one of the
sources *is* TFDS, and decoding thousands of JPEG files of different sizes and streaming
them through a per-image `preprocess` is what tf.data is for. Keras's own
`image_dataset_from_directory` resizes every image to one fixed size while reading, which
would defeat the question's "resize the shorter side to 256"; it is used to list an
image folder (its class and file-extension conventions), and the files are decoded here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .paths import data_home

FLOWERS_DIR = "oxford-flowers102"
NUM_IMAGES = 8189
NUM_CLASSES = 102
FRACTIONS = (0.5, 0.25, 0.25)
SPLIT_NAMES = ("train", "validation", "test")
IMAGE_SIZE = 224
RESIZE_TO = 256
SOURCE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"


class DataUnavailable(RuntimeError):
    """The flowers are in none of the places looked at."""


@dataclasses.dataclass
class FlowersData:
    """Every image of the data set (as a file path or encoded bytes) with its integer class."""

    labels: np.ndarray
    class_names: list[str]
    origin: str
    kind: str  # "archive", "folder", "tfds" or "synthetic"
    paths: list[str] | None = None
    encoded: list[bytes] | None = None

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image(self, index: int) -> np.ndarray:
        """Image `index` decoded as a uint8 HxWx3 array."""
        import tensorflow as tf

        data = self.encoded[index] if self.encoded is not None else tf.io.read_file(self.paths[index])
        return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()

    def encoded_bytes(self, index: int) -> bytes:
        """Image `index` as its encoded file (JPEG, PNG, ...)."""
        if self.encoded is not None:
            return bytes(self.encoded[index])
        return Path(self.paths[index]).read_bytes()

    def encoded_dataset(self, indices: Sequence[int]) -> Any:
        """A tf.data.Dataset of (decoded uint8 image, label) for `indices`, in that order."""
        import tensorflow as tf

        indices = np.asarray(indices, dtype=np.int64)
        labels = self.labels[indices].astype(np.int64)
        if self.encoded is not None:
            items = tf.data.Dataset.from_tensor_slices(([self.encoded[i] for i in indices], labels))
            read = lambda data, label: (data, label)  # noqa: E731
        else:
            items = tf.data.Dataset.from_tensor_slices(([self.paths[i] for i in indices], labels))
            read = lambda path, label: (tf.io.read_file(path), label)  # noqa: E731

        def decode(data: Any, label: Any) -> tuple[Any, Any]:
            return tf.io.decode_image(data, channels=3, expand_animations=False), label

        return items.map(read).map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def flowers_home() -> Path:
    """`$CNN_GRADER_DATA/oxford-flowers102` (default `datasets/oxford-flowers102`)."""
    return data_home() / FLOWERS_DIR


def flower_names() -> list[str]:
    """The 102 class names, in label order (from TFDS's builder, which needs no download)."""
    try:
        import tensorflow_datasets as tfds

        with contextlib.redirect_stdout(io.StringIO()):
            return list(tfds.builder("oxford_flowers102").info.features["label"].names)
    except Exception:  # tfds missing or changed: fall back to numbered classes
        return [f"class {i + 1}" for i in range(NUM_CLASSES)]


def unavailable_message(looked: Sequence[str] = ()) -> str:
    where = flowers_home()
    lines = [
        "The Oxford 102 flowers were not found" + (f" (looked in: {'; '.join(looked)})." if looked else "."),
        "Put them in one of these places (see datasets/README.md):",
        f"  - {where}/102flowers.tgz and {where}/imagelabels.mat, from {SOURCE_URL};",
        f"  - {where}/images/<class name>/*.jpg, one sub-folder per class;",
        "  - TensorFlow Datasets: `tfds build oxford_flowers102` on a machine with internet,",
        "    then copy ~/tensorflow_datasets (or set TFDS_DATA_DIR);",
        "or name one with --data PATH (grader report) or CNN_GRADER_FLOWERS=PATH (grader check): an archive folder, an image folder, or tfds.",
    ]
    return "\n".join(lines)


def load_flowers(source: str | Path | None = None, *, tfds_data_dir: str | None = None, download: bool = False) -> FlowersData:
    """Load every image of the flowers (or of an image folder) with its class.

    `source`: None (look in the data home, then TFDS), "tfds", a folder holding
    `102flowers.tgz`/`jpg/` and `imagelabels.mat`, or a folder with one sub-folder per class.
    """
    if source is not None and str(source).lower() == "tfds":
        return load_tfds(data_dir=tfds_data_dir, download=download)
    if source is not None:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataUnavailable(f"{folder} is not a folder.\n" + unavailable_message())
        if _has_archive(folder):
            return load_archive(folder)
        return load_folder(folder)
    looked = []
    home = flowers_home()
    if _has_archive(home):
        return load_archive(home)
    looked.append(str(home))
    if (home / "images").is_dir():
        return load_folder(home / "images")
    looked.append(str(home / "images"))
    try:
        return load_tfds(data_dir=tfds_data_dir, download=False)
    except DataUnavailable:
        looked.append("TensorFlow Datasets' data dir")
    raise DataUnavailable(unavailable_message(looked))


def _has_archive(folder: Path) -> bool:
    return (folder / "imagelabels.mat").is_file() and ((folder / "102flowers.tgz").is_file() or (folder / "jpg").is_dir())


def load_archive(folder: Path) -> FlowersData:
    """The original release: `jpg/image_00001.jpg` ... with labels 1..102 in `imagelabels.mat`."""
    from scipy.io import loadmat

    folder = Path(folder)
    jpg = folder / "jpg"
    if not jpg.is_dir():
        with tarfile.open(folder / "102flowers.tgz") as archive:
            archive.extractall(folder, filter="data")
    labels = np.asarray(loadmat(folder / "imagelabels.mat")["labels"]).ravel().astype(np.int64) - 1
    paths = [str(jpg / f"image_{i + 1:05d}.jpg") for i in range(len(labels))]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataUnavailable(f"{len(missing)} of the {len(paths)} images listed in imagelabels.mat are missing from {jpg} (e.g. {missing[0]}).")
    names = flower_names()
    if len(names) != int(labels.max()) + 1:
        names = [f"class {i + 1}" for i in range(int(labels.max()) + 1)]
    return FlowersData(labels, names, f"102flowers.tgz + imagelabels.mat in {folder}", "archive", paths=paths)


def load_folder(folder: Path, *, kind: str = "folder") -> FlowersData:
    """An image folder, one sub-folder per class, listed by `keras.utils.image_dataset_from_directory`."""
    import keras

    folder = Path(folder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            listing = keras.utils.image_dataset_from_directory(folder, labels="inferred", batch_size=None, shuffle=False, verbose=False)
    except ValueError as error:
        raise DataUnavailable(f"{folder} is not an image folder with one sub-folder per class ({error}).\n" + unavailable_message()) from None
    class_names = list(listing.class_names)
    paths = [str(p) for p in listing.file_paths]
    if not paths:
        raise DataUnavailable(f"{folder} holds no images.\n" + unavailable_message())
    labels = np.array([class_names.index(Path(p).relative_to(folder).parts[0]) for p in paths], dtype=np.int64)
    return FlowersData(labels, class_names, f"image folder {folder}", kind, paths=paths)


def load_tfds(*, data_dir: str | None = None, download: bool = False) -> FlowersData:
    """TFDS's `oxford_flowers102`: its train, validation and test splits joined (images kept encoded)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataUnavailable("tensorflow-datasets is not installed (pip install tensorflow-datasets).") from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dataset, info = tfds.load(
                "oxford_flowers102",
                split="train+validation+test",
                data_dir=data_dir,
                download=download,
                with_info=True,
                decoders={"image": tfds.decode.SkipDecoding()},
            )
    except Exception as error:  # not prepared, no network, ...
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataUnavailable(f"TensorFlow Datasets could not load oxford_flowers102 ({detail}).\n" + unavailable_message()) from None
    encoded, labels = [], []
    for example in dataset.as_numpy_iterator():
        encoded.append(example["image"])
        labels.append(int(example["label"]))
    return FlowersData(np.array(labels, dtype=np.int64), list(info.features["label"].names), "TensorFlow Datasets oxford_flowers102", "tfds", encoded=encoded)


def pack_images(data: FlowersData, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """Images `indices` as they are stored (encoded), in one uint8 array with the offsets between them.

    How images cross to a sandboxed process: two arrays, whatever the source (8,189
    JPEGs are about 330 MB this way, against 1.3 GB decoded); `unpack_images` undoes it.
    """
    blobs = [data.encoded_bytes(int(i)) for i in indices]
    offsets = np.cumsum([0, *[len(b) for b in blobs]]).astype(np.int64)
    return {"data": np.frombuffer(b"".join(blobs), dtype=np.uint8).copy(), "offsets": offsets}


def unpack_images(pack: dict[str, np.ndarray]) -> list[bytes]:
    """The encoded images of a `pack_images` pack."""
    data, offsets = np.asarray(pack["data"], dtype=np.uint8), np.asarray(pack["offsets"], dtype=np.int64)
    return [data[int(a) : int(b)].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]


def packed_flowers(pack: dict[str, np.ndarray], labels: Sequence[int], num_classes: int) -> FlowersData:
    """A `FlowersData` of the images of a pack (the labels given, one per image)."""
    return FlowersData(np.asarray(labels, dtype=np.int64), [f"class {i + 1}" for i in range(num_classes)], "images sent by the grader", "packed", encoded=unpack_images(pack))


def decode_image(encoded: bytes) -> np.ndarray:
    """An encoded image as a uint8 HxWx3 array."""
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


# --- generated data for the quick tier and the tests ------------------------------------

SYNTHETIC_NAMES = ("sun-disc", "blue-ring", "red-stripes", "green-cross", "violet-dots", "orange-grid", "teal-star", "pink-wave")


def make_synthetic_flowers(folder: Path, *, num_classes: int = 4, per_class: int = 8, seed: int = 0) -> Path:
    """Write a tiny image folder (one sub-folder per class) of easily told apart "flowers".

    Each class has its own colours and pattern; sizes and aspect ratios vary (40 to 96
    pixels a side), so the shorter-side resize and the crops are exercised.
    """
    import keras

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    for c in range(num_classes):
        name = SYNTHETIC_NAMES[c] if c < len(SYNTHETIC_NAMES) else f"class-{c}"
        target = folder / f"{c:02d}-{name}"
        target.mkdir(parents=True, exist_ok=True)
        hue = np.array([np.cos(2 * np.pi * c / num_classes), np.cos(2 * np.pi * (c / num_classes + 1 / 3)), np.cos(2 * np.pi * (c / num_classes + 2 / 3))])
        colour = 127.5 + 110 * hue
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(40, 97, size=2))
            yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
            pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (c + 1) * (xx if c % 2 else yy) * 2)
            image = colour[None, None, :] * (0.6 + 0.4 * pattern[..., None])
            image += rng.normal(0, 12, size=image.shape)
            keras.utils.save_img(str(target / f"{i:03d}.png"), np.clip(image, 0, 255).astype(np.uint8), scale=False)
    return folder


def synthetic_flowers(folder: Path, **kwargs: Any) -> FlowersData:
    """Generate (once) and load the quick tier's image folder."""
    folder = Path(folder)
    if not any(folder.glob("*/*.png")):
        make_synthetic_flowers(folder, **kwargs)
    return load_folder(folder, kind="synthetic")


# --- the 50/25/25 split -------------------------------------------------------------------


def split_problem(labels: np.ndarray, parts: Sequence[Any], *, call: str = "split_indices(labels)") -> str | None:
    """Why (train, val, test) is not a stratified 50/25/25 split of `labels`, or None when it is."""
    labels = np.asarray(labels)
    n = len(labels)
    if not isinstance(parts, (tuple, list)) or len(parts) != 3:
        return f"`{call}` should return three index arrays (train_idx, val_idx, test_idx), got {type(parts).__name__}."
    arrays = []
    for name, part in zip(SPLIT_NAMES, parts):
        array = np.asarray(part)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            return f"The {name} part should be a 1-D array of integer image indices, got shape {array.shape} of {array.dtype}. Return indices into `labels`, not the labels or a boolean mask."
        if array.size and (array.min() < 0 or array.max() >= n):
            return f"The {name} part holds index {int(array.min() if array.min() < 0 else array.max())}, outside 0..{n - 1}."
        if len(np.unique(array)) != len(array):
            return f"The {name} part lists some images twice ({len(array) - len(np.unique(array))} repeats): draw without replacement (a permutation), not with random choices."
        arrays.append(array.astype(np.int64))
    for i in range(3):
        for j in range(i + 1, 3):
            shared = np.intersect1d(arrays[i], arrays[j])
            if shared.size:
                return (
                    f"{shared.size} images are in both {SPLIT_NAMES[i]} and {SPLIT_NAMES[j]} (e.g. index {int(shared[0])}): the split leaks, "
                    "so the test accuracy would measure memory, not generalisation. Shuffle each class's indices once and cut that one "
                    "permutation into consecutive pieces."
                )
    covered = np.concatenate(arrays)
    if covered.size != n:
        missing = np.setdiff1d(np.arange(n), covered)
        return f"{missing.size} of the {n} images are in no split (e.g. index {int(missing[0])}): the three parts together must cover every image."
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        counts = [int(np.isin(a, members).sum()) for a in arrays]
        expected = [f * members.size for f in FRACTIONS]
        if any(abs(k - e) > 1 for k, e in zip(counts, expected)):
            exp = "/".join(f"{e:g}" for e in expected)
            return (
                f"Class {int(c)} has {members.size} images; your split puts {counts[0]}/{counts[1]}/{counts[2]} of them in "
                f"train/validation/test, expected {exp} (within one image). Split each class separately (stratify): "
                "50% of its images to train, 25% to validation, the rest to test."
            )
    return None


def split_sizes(labels: np.ndarray, parts: Sequence[np.ndarray]) -> dict[str, Any]:
    """Totals and per-class extremes of a split, for the report."""
    labels = np.asarray(labels)
    sizes: dict[str, Any] = {"images": int(len(labels)), "classes": int(len(np.unique(labels)))}
    for name, part in zip(SPLIT_NAMES, parts):
        counts = np.bincount(labels[np.asarray(part, dtype=np.int64)], minlength=int(labels.max()) + 1)
        sizes[name] = {"images": int(len(part)), "per_class_min": int(counts.min()), "per_class_max": int(counts.max())}
    return sizes


# --- input pipelines ------------------------------------------------------------------------


def make_dataset(
    data: FlowersData,
    indices: Sequence[int],
    preprocess: Callable[[Any, bool], Any],
    *,
    training: bool,
    batch_size: int = 32,
    shuffle_seed: int | None = None,
    cache: bool = False,
) -> Any:
    """Batches of (preprocess(image, training), label) for the images `indices`.

    The student's `preprocess` is traced into the tf.data graph when it can be (TensorFlow
    ops); otherwise (Keras ops with static sizes, NumPy) it runs eagerly through
    `tf.py_function`, which is slower but accepts any code. `cache` keeps the preprocessed
    evaluation images in memory: their centre crop never changes.
    """
    import tensorflow as tf

    dataset = data.encoded_dataset(indices)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(indices), seed=shuffle_seed, reshuffle_each_iteration=True)
    size = (IMAGE_SIZE, IMAGE_SIZE, 3)

    def eager(image: Any) -> Any:
        out = preprocess(image, training)
        return tf.convert_to_tensor(np.asarray(out, dtype=np.float32) if not tf.is_tensor(out) else tf.cast(out, tf.float32))

    def in_graph(image: Any, label: Any) -> tuple[Any, Any]:
        return tf.ensure_shape(tf.cast(preprocess(image, training), tf.float32), size), label

    def through_python(image: Any, label: Any) -> tuple[Any, Any]:
        out = tf.py_function(eager, [image], tf.float32)
        return tf.ensure_shape(out, size), label

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            mapped = dataset.map(in_graph, num_parallel_calls=tf.data.AUTOTUNE)
    except Exception:  # not traceable: run it eagerly
        mapped = dataset.map(through_python)
    if cache:
        mapped = mapped.cache()
    return mapped.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --- backbones ---------------------------------------------------------------------------------

# keras.applications model names (lower case) -> the module whose preprocess_input they expect.
_FAMILIES = (
    (r"^efficientnetv2", "efficientnet_v2"),
    (r"^efficientnet", "efficientnet"),
    (r"^resnet\d+v2", "resnet_v2"),
    (r"^resnet\d+$", "resnet"),
    (r"^mobilenetv3", "mobilenet_v3"),
    (r"^mobilenetv2", "mobilenet_v2"),
    (r"^mobilenet", "mobilenet"),
    (r"^convnext", "convnext"),
    (r"^densenet", "densenet"),
    (r"^vgg16", "vgg16"),
    (r"^vgg19", "vgg19"),
    (r"^inception_resnet_v2", "inception_resnet_v2"),
    (r"^inception_v3", "inception_v3"),
    (r"^xception", "xception"),
    (r"^nasnet", "nasnet"),
)


def backbone_module(name: str) -> str | None:
    """The `keras.applications` module of a backbone called `name` ('resnet50' -> 'resnet')."""
    for pattern, module in _FAMILIES:
        if re.match(pattern, name.lower()):
            return module
    return None


def backbone_constructor(name: str) -> Callable[..., Any] | None:
    """The `keras.applications` constructor that builds a model called `name` ('mobilenetv2_1.00_224' -> MobileNetV2)."""
    import keras

    key = re.sub(r"^(mobilenet(v2)?)_.*$", r"\1", name.lower())
    key = re.sub(r"[^a-z0-9]", "", key)
    for attr in dir(keras.applications):
        if attr[:1].isupper() and re.sub(r"[^a-z0-9]", "", attr.lower()) == key:
            return getattr(keras.applications, attr)
    return None


def backbone_preprocess_input(name: str) -> Callable[[Any], Any] | None:
    """`keras.applications.<module>.preprocess_input` for the backbone called `name`."""
    import keras

    module = backbone_module(name)
    found = getattr(keras.applications, module, None) if module else None
    return getattr(found, "preprocess_input", None)


def find_backbone(model: Any) -> Any | None:
    """The pretrained backbone inside `model`: its largest nested keras.Model."""
    import keras

    nested = [layer for layer in getattr(model, "layers", []) if isinstance(layer, keras.Model)]
    if not nested:
        return None
    return max(nested, key=lambda m: len(m.layers))


def batch_norm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer in `model`, nested models included."""
    import keras

    found = []
    for layer in model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers") else model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def calibrate_batch_norm(backbone: Any, images: Any) -> int:
    """Set every BatchNormalization's moving statistics of a random backbone to those of `images`.

    A keras.applications network built with weights=None gives vanishingly small features
    (1e-5 for EfficientNetB0, 1e-12 for MobileNetV2): its BatchNormalization layers hold
    mean 0 and variance 1, not the statistics of real activations, so nothing could be
    learnt from them. One pass in training mode with momentum 0 (and dropout off) stores
    the statistics of this batch, layer after layer (calibrate on all the quick tier's
    training images: statistics of a few classes only blow up on the others). The weights
    stay random. Used by the quick tier only; returns how
    many layers were calibrated.
    """
    import keras

    norms = batch_norm_layers(backbone)
    dropouts = [layer for layer in backbone._flatten_layers(include_self=False) if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer, layer.momentum, layer.trainable) for layer in norms]
    rates = [(layer, layer.rate) for layer in dropouts]
    try:
        for layer in norms:
            layer.momentum, layer.trainable = 0.0, True
        for layer in dropouts:
            layer.rate = 0.0
        backbone(images, training=True)
    finally:
        for layer, momentum, trainable in saved:
            layer.momentum, layer.trainable = momentum, trainable
        for layer, rate in rates:
            layer.rate = rate
    return len(norms)


def looks_like_download_failure(message: str) -> bool:
    """Does a build error look like Keras failing to fetch ImageNet weights (offline)?"""
    return bool(re.search(r"URL fetch failure|urlopen|Name or service not known|Temporary failure in name resolution|"
                          r"Failed to establish|Connection refused|Network is unreachable|getaddrinfo|HTTP Error|storage\.googleapis", message))


def weights_unavailable_message(weights: str, detail: str = "") -> str:
    return (
        f"The backbone's ImageNet weights could not be loaded (weights={weights!r}{': ' + detail if detail else ''}). "
        "Either run once on a machine with internet (Keras caches them in $KERAS_HOME/models, default ~/.keras/models; "
        "copy that folder to this machine), or download the backbone's `*_notop.h5` file and pass --weights PATH "
        "(build_transfer_model(weights=PATH)), or grade the quick tier (--tier quick), which uses weights=None."
    )


# --- one training run, with per-epoch validation and test curves -------------------------------


@dataclasses.dataclass
class Experiment:
    """What one run of the pipeline produced: the model's make-up, per-epoch curves, final test figures."""

    backbone: str
    feature_dim: int
    trainable_params: int
    frozen_params: int
    head: list[str]
    tier: str
    weights: str
    epochs: int
    batch_size: int
    data_origin: str
    data_kind: str
    class_names: list[str]
    split: dict[str, Any]
    curves: dict[str, list[float]]
    test_accuracy: float
    test_top5: float
    confusion: np.ndarray
    seconds: float
    history: dict[str, list[float]]
    notes: list[str] = dataclasses.field(default_factory=list)
    backbone_drift: float = 0.0  # largest change of any backbone weight or BatchNorm statistic during training
    train_loss_before: float = float("nan")  # loss on the training images (centre crops) before and after training
    train_loss_after: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["confusion"] = self.confusion.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Experiment":
        data = dict(data)
        data["confusion"] = np.asarray(data["confusion"], dtype=np.int64)
        return cls(**data)


def _labels_of(dataset: Any) -> np.ndarray:
    return np.concatenate([np.asarray(y) for _, y in dataset.as_numpy_iterator()]).astype(np.int64)


def scores_from_probs(probs: Any, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(loss, accuracy, top-5 accuracy, predicted classes) of predictions `probs` (N x classes) for `labels`."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels) or (labels.size and labels.max() >= probs.shape[1]):
        raise ValueError(f"the model gave predictions of shape {probs.shape} for {len(labels)} images")
    if not (np.all(probs >= -1e-6) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)):  # logits: softmax them
        probs = np.exp(probs - probs.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
    picked = probs[np.arange(len(labels)), labels]
    loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    predicted = probs.argmax(axis=1)
    k = min(5, probs.shape[1])
    top5 = np.argsort(-probs, axis=1)[:, :k]
    return loss, float(np.mean(predicted == labels)), float(np.mean((top5 == labels[:, None]).any(axis=1))), predicted


def scores(model: Any, dataset: Any, labels: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(loss, accuracy, top-5 accuracy, predicted classes) of `model` on `dataset` (or an array of images), computed here, not by compile()."""
    return scores_from_probs(model.predict(dataset, verbose=0), labels)


def describe_model(model: Any) -> dict[str, Any]:
    """Backbone name, feature count F, the head's layers, trainable and frozen parameters."""
    backbone = find_backbone(model)
    trainable = int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
    total = int(sum(int(np.prod(v.shape)) for v in model.weights))
    head = []
    layers_after = model.layers[model.layers.index(backbone) + 1 :] if backbone is not None else model.layers
    for layer in layers_after:
        config = layer.get_config()
        text = type(layer).__name__
        if "units" in config:
            text += f"({config['units']}, {config.get('activation', 'linear')})"
        elif "activation" in config:
            text += f"({config['activation']})"
        head.append(text)
    return {
        "backbone": backbone.name if backbone is not None else "(not a nested model)",
        "feature_dim": int(backbone.output.shape[-1]) if backbone is not None else 0,
        "trainable_params": trainable,
        "frozen_params": total - trainable,
        "head": head,
    }


def calibration_note(count: int) -> str:
    return (
        f"weights=None: the backbone is random. Its BatchNormalization statistics were estimated on {count} "
        "training images so that its features are not vanishingly small; this run checks the pipeline, not the accuracy."
    )


def backbone_snapshot(model: Any) -> list[np.ndarray]:
    """The backbone's weights and BatchNormalization statistics, as arrays (empty without a backbone)."""
    backbone = find_backbone(model)
    return [np.array(v.numpy()) for v in backbone.weights] if backbone is not None else []


def backbone_drift(model: Any, before: Sequence[np.ndarray]) -> float:
    """The largest change of any backbone weight or statistic of `model` since `before` (`backbone_snapshot`)."""
    after = backbone_snapshot(model)
    if len(after) != len(before) or any(a.shape != b.shape for a, b in zip(after, before)):
        return float("inf")
    return max((float(np.max(np.abs(a - b))) for a, b in zip(after, before) if b.size), default=0.0)


@dataclasses.dataclass
class TrainingRecord:
    """What `train_recording_epochs` saw: what train returned, each epoch's logs and predictions."""

    returned: Any
    logs: list[dict[str, float]]
    probs: dict[str, list[np.ndarray]]


def train_recording_epochs(
    train: Callable[..., Any],
    model: Any,
    train_ds: Any,
    val_ds: Any,
    epochs: int,
    eval_sets: dict[str, Any],
    on_epoch: Callable[[int, TrainingRecord], None] | None = None,
) -> TrainingRecord:
    """Call `train(model, train_ds, val_ds, epochs)` with a callback added to the `model.fit` calls it makes.

    After every epoch the callback records fit's logs and the model's predictions on each
    dataset of `eval_sets` (the student's code does not need to know), then calls `on_epoch`.
    """
    import keras

    record = TrainingRecord(None, [], {name: [] for name in eval_sets})

    class Curves(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            record.logs.append({str(k): float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
            for name, dataset in eval_sets.items():
                record.probs[name].append(np.asarray(self.model.predict(dataset, verbose=0), dtype=np.float32))
            if on_epoch is not None:
                on_epoch(epoch, record)

    recorder = Curves()
    original_fit = model.fit

    def fit_with_curves(*args: Any, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), recorder]
        return original_fit(*args, **kwargs)

    model.fit = fit_with_curves
    try:
        record.returned = train(model, train_ds, val_ds, epochs)
    finally:
        with contextlib.suppress(Exception):
            del model.fit
    return record


CURVE_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "test_top5")


def epoch_curves(logs: Sequence[Mapping[str, Any]], probs: Mapping[str, Sequence[Any]], labels: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    """Per-epoch train/val/test figures from fit's logs and the predictions on the validation and test images."""
    curves: dict[str, list[float]] = {k: [] for k in CURVE_KEYS}
    for epoch, entry in enumerate(logs):
        curves["train_loss"].append(float(entry.get("loss", np.nan)))
        accuracy = [v for k, v in entry.items() if "acc" in k and not k.startswith("val_")]
        curves["train_accuracy"].append(float(accuracy[0]) if accuracy else float("nan"))
        loss, acc, _, _ = scores_from_probs(probs["validation"][epoch], labels["validation"])
        curves["val_loss"].append(loss)
        curves["val_accuracy"].append(acc)
        loss, acc, top5, _ = scores_from_probs(probs["test"][epoch], labels["test"])
        curves["test_loss"].append(loss)
        curves["test_accuracy"].append(acc)
        curves["test_top5"].append(top5)
    return curves


def history_dict(history: Any) -> dict[str, list[float]]:
    """What train_transfer returned, as {metric: per-epoch floats} (empty unless it is a dict, i.e. History.history)."""
    if not isinstance(history, dict):
        return {}
    return {str(key): [float(v) for v in values] for key, values in history.items()}


def make_experiment(
    described: dict[str, Any],
    data: FlowersData,
    parts: Sequence[np.ndarray],
    *,
    tier: str,
    weights: Any,
    epochs: int,
    batch_size: int,
    curves: dict[str, list[float]],
    test_probs: Any,
    test_labels: np.ndarray,
    history: dict[str, list[float]],
    notes: list[str],
    drift: float,
    loss_before: float,
    loss_after: float,
    seconds: float,
) -> Experiment:
    """The `Experiment` of a run, from what was measured (the final test figures from `test_probs`)."""
    notes = list(notes)
    if not curves["test_accuracy"]:
        notes.append("train_transfer did not call model.fit, so no per-epoch curves were recorded; only the final test figures are shown.")
    _, acc, top5, predicted = scores_from_probs(test_probs, test_labels)
    k = data.num_classes
    confusion = np.bincount(np.asarray(test_labels, dtype=np.int64) * k + predicted, minlength=k * k).reshape(k, k)
    return Experiment(
        backbone=described["backbone"],
        feature_dim=described["feature_dim"],
        trainable_params=described["trainable_params"],
        frozen_params=described["frozen_params"],
        head=described["head"],
        tier=tier,
        weights="None" if weights is None else str(weights),
        epochs=int(epochs),
        batch_size=batch_size,
        data_origin=data.origin,
        data_kind=data.kind,
        class_names=list(data.class_names),
        split=split_sizes(data.labels, parts),
        curves=curves,
        test_accuracy=acc,
        test_top5=top5,
        confusion=confusion,
        seconds=seconds,
        history=history,
        notes=notes,
        backbone_drift=drift,
        train_loss_before=loss_before,
        train_loss_after=loss_after,
    )


def run_experiment(
    functions: dict[str, Callable[..., Any]],
    data: FlowersData,
    *,
    tier: str,
    weights: Any,
    epochs: int,
    batch_size: int = 32,
    seed: int = 0,
    split: Sequence[np.ndarray] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Experiment, Any]:
    """Split, preprocess, build and train with the four q7 functions, in this process; record train/val/test curves.

    The test set is evaluated after every epoch by a callback that is added to the
    `model.fit` call inside `train_transfer` (the student's code does not need to know).
    Returns the experiment and the trained model. Exceptions from the functions propagate.
    Used by `grader report q7`; grading runs the same parts with the student's code in
    the sandbox (`grader.questions.q7_flowers`).
    """
    import time

    say = log or (lambda message: None)
    started = time.perf_counter()
    parts = split if split is not None else functions["split_indices"](data.labels, seed=seed)
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    preprocess = functions["preprocess"]
    train_ds = make_dataset(data, parts[0], preprocess, training=True, batch_size=batch_size, shuffle_seed=seed)
    val_ds = make_dataset(data, parts[1], preprocess, training=False, batch_size=batch_size, cache=True)
    test_ds = make_dataset(data, parts[2], preprocess, training=False, batch_size=batch_size, cache=True)
    labels = {"validation": _labels_of(val_ds), "test": _labels_of(test_ds)}
    say(f"split {len(parts[0])}/{len(parts[1])}/{len(parts[2])}; building the model")
    model = functions["build_transfer_model"](num_classes=data.num_classes, weights=weights)
    described = describe_model(model)
    backbone = find_backbone(model)
    notes = []
    if weights is None and backbone is not None and batch_norm_layers(backbone):
        calibration = make_dataset(data, parts[0][:64], preprocess, training=False, batch_size=64)
        images = next(iter(calibration))[0]
        calibrate_batch_norm(backbone, images)
        notes.append(calibration_note(int(images.shape[0])))
    frozen_before = backbone_snapshot(model)
    train_eval = make_dataset(data, parts[0], preprocess, training=False, batch_size=batch_size, cache=True) if tier == "quick" else None
    train_labels = _labels_of(train_eval) if train_eval is not None else None
    loss_before = scores(model, train_eval, train_labels)[0] if train_eval is not None else float("nan")

    def progress(epoch: int, record: TrainingRecord) -> None:
        curves = epoch_curves(record.logs, record.probs, labels)
        say(f"epoch {epoch + 1}: loss {curves['train_loss'][-1]:.3f}, val accuracy {curves['val_accuracy'][-1]:.3f}, test accuracy {curves['test_accuracy'][-1]:.3f}")

    record = train_recording_epochs(functions["train_transfer"], model, train_ds, val_ds, epochs, {"validation": val_ds, "test": test_ds}, progress)
    experiment = make_experiment(
        described, data, parts, tier=tier, weights=weights, epochs=epochs, batch_size=batch_size,
        curves=epoch_curves(record.logs, record.probs, labels),
        test_probs=model.predict(test_ds, verbose=0), test_labels=labels["test"],
        history=history_dict(record.returned), notes=notes, drift=backbone_drift(model, frozen_before),
        loss_before=loss_before,
        loss_after=scores(model, train_eval, train_labels)[0] if train_eval is not None else float("nan"),
        seconds=time.perf_counter() - started,
    )
    return experiment, model
