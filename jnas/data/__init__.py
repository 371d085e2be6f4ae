"""Data loading, augmentation and deterministic batching for image-classification NAS.

* :mod:`jnas.data.sources`: whole splits as in-memory numpy arrays (tfds or IDX files) and the
  :data:`DATASETS` metadata registry.
* :mod:`jnas.data.augment`: DARTS augmentation (crop, flip, normalise, cutout) in pure JAX.
* :mod:`jnas.data.pipeline`: seekable, resumable batch iteration and the DARTS search split.
"""

from jnas.data.augment import (
    augment_batch,
    cutout,
    normalize,
    random_crop,
    random_flip,
    square_mask,
)
from jnas.data.pipeline import (
    Batches,
    batch_key,
    epoch_batches,
    epoch_permutation,
    num_batches,
    shard,
    split_train_val,
    subset,
)
from jnas.data.sources import (
    DATASETS,
    SPLITS,
    DataFormatError,
    DatasetInfo,
    DatasetNotFoundError,
    get_dataset_info,
    load_arrays,
    load_idx_dir,
    read_idx,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "Batches",
    "DataFormatError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "augment_batch",
    "batch_key",
    "cutout",
    "epoch_batches",
    "epoch_permutation",
    "get_dataset_info",
    "load_arrays",
    "load_idx_dir",
    "normalize",
    "num_batches",
    "random_crop",
    "random_flip",
    "read_idx",
    "shard",
    "split_train_val",
    "square_mask",
    "subset",
]
