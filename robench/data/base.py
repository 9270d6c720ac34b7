"""In-memory and lazy datasets in pixel space ([0,1] float, NCHW) with integer labels."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from robench._errors import DataError


class Dataset(ABC):
    """An indexable labelled image set. ``load`` returns float pixels in [0,1], NCHW."""

    num_classes: int
    input_shape: tuple[int, int, int]

    @abstractmethod
    def __len__(self) -> int: ...

    @property
    @abstractmethod
    def labels(self) -> torch.Tensor:
        """All labels (int64), cheap to read."""

    @abstractmethod
    def load(self, indices: Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(N, C, H, W)`` float32 in [0,1] and labels ``(N,)`` int64."""

    def subset(self, n: int | None) -> Dataset:
        """The first ``n`` examples (all when ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        return SubsetDataset(self, range(n))

    def validate(self, name: str) -> None:
        """Check labels against ``num_classes``.

        Raises:
            DataError: labels out of range.
        """
        labels = self.labels
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise DataError(
                f"dataset {name}: labels range over [{int(labels.min())}, {int(labels.max())}] but the "
                f"manifest declares {self.num_classes} classes"
            )


class ArrayDataset(Dataset):
    """Images held in memory: uint8 NHWC (0..255) or float NCHW (0..1), converted per batch."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int) -> None:
        images = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
        labels = torch.as_tensor(np.asarray(labels)).long() if isinstance(labels, np.ndarray) else labels.long()
        if images.ndim == 3:  # grayscale without a channel axis
            images = images.unsqueeze(-1 if images.dtype == torch.uint8 else 1)
        if images.ndim != 4:
            raise DataError(f"expected images of rank 4 (N,H,W,C uint8 or N,C,H,W float), got shape {list(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if images.dtype == torch.uint8:
            self._uint8 = True
            channels, height, width = images.shape[3], images.shape[1], images.shape[2]
        elif images.is_floating_point():
            self._uint8 = False
            channels, height, width = images.shape[1], images.shape[2], images.shape[3]
            if images.numel() and not bool(torch.isfinite(images).all()):
                raise DataError("float images hold NaN or infinite values")
            if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
                raise DataError("float images must lie in [0, 1] (NCHW)")
        else:
            raise DataError(f"images must be uint8 (NHWC) or float (NCHW), got {images.dtype}")
        if channels not in (1, 3):
            raise DataError(f"expected 1 or 3 channels, got images of shape {list(images.shape)}")
        self._images = images
        self._labels = labels
        self.num_classes = num_classes
        self.input_shape = (int(channels), int(height), int(width))

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        return self._labels

    def load(self, indices: Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        index = indices if isinstance(indices, slice) else torch.as_tensor(list(indices), dtype=torch.long)
        images = self._images[index]
        if self._uint8:
            images = images.permute(0, 3, 1, 2).float().div_(255.0)
        return images.contiguous().float(), self._labels[index]


class SubsetDataset(Dataset):
    """A view of some examples of another dataset, in the given order."""

    def __init__(self, parent: Dataset, indices: Sequence[int]) -> None:
        self._parent = parent
        self._indices = list(indices)
        self.num_classes = parent.num_classes
        self.input_shape = parent.input_shape

    def __len__(self) -> int:
        return len(self._indices)

    @property
    def parent(self) -> Dataset:
        """The dataset this is a view of."""
        return self._parent

    @property
    def indices(self) -> list[int]:
        """Positions in :attr:`parent` of this view's examples, in order (a copy)."""
        return list(self._indices)

    @property
    def labels(self) -> torch.Tensor:
        return self._parent.labels[torch.as_tensor(self._indices, dtype=torch.long)]

    def load(self, indices: Sequence[int] | slice) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self._indices[indices] if isinstance(indices, slice) else [self._indices[i] for i in indices]
        return self._parent.load(chosen)
