"""The data every search loop reads: the DARTS search split and its batch preparation."""

from __future__ import annotations

import ml_collections

from jnas import data as jdata


def load_search_data(config: ml_collections.ConfigDict):
    """The DARTS search split: the train split halved into search-train and search-val.

    Returns:
      ``(info, (train_images, train_labels), (val_images, val_labels))``.
    """
    d = config.data
    info = jdata.get_dataset_info(d.name)
    images, labels = jdata.load_arrays(d.name, "train", data_dir=d.data_dir, source=d.source)
    (tx, ty), (vx, vy) = jdata.split_train_val(
        images, labels, fraction=d.train_portion, limit=d.limit or None
    )
    return info, (tx, ty), (vx, vy)


def make_prepare(info, config: ml_collections.ConfigDict):
    """``(key, images, labels) -> batch`` with the DARTS search augmentation (crop, flip,
    normalise)."""
    flip = info.flip if config.data.flip is None else config.data.flip

    def prepare(key, images, labels):
        x = jdata.augment_batch(
            key,
            images,
            mean=info.mean,
            std=info.std,
            crop_padding=config.data.crop_padding,
            flip=flip,
        )
        return {"image": x, "label": labels}

    return prepare


def normalize_only(info):
    """``(images, labels) -> batch``, normalised without augmentation (evaluation)."""

    def prepare(images, labels):
        return {"image": jdata.normalize(images, info.mean, info.std), "label": labels}

    return prepare
