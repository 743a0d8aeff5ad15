"""Model weights as one flat float32 vector plus a layout, serialized as safetensors.

This is the only form in which weights cross a boundary (between nodes, into the blob
store, into aggregation rules).
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from fedledger.errors import FedledgerError

Vector = np.ndarray  # 1-D float32


@dataclass(frozen=True)
class Layout:
    """Names and shapes of a model's tensors, in the order they are flattened."""

    entries: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def size(self) -> int:
        return sum(int(np.prod(shape)) for _, shape in self.entries)

    @classmethod
    def of(cls, module: torch.nn.Module) -> Layout:
        return cls(tuple((n, tuple(t.shape)) for n, t in module.state_dict().items()))


def flatten(module: torch.nn.Module) -> Vector:
    """Copy a module's state into one flat float32 vector (state_dict order)."""
    parts = [t.detach().reshape(-1).to(torch.float32) for t in module.state_dict().values()]
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(parts).numpy()  # cat allocates a fresh tensor: no further copy needed


def load_flat(module: torch.nn.Module, vector: Vector) -> None:
    """Write a flat vector back into a module's tensors, in place."""
    layout = Layout.of(module)
    if vector.shape != (layout.size,):
        raise FedledgerError(
            f"weight vector has shape {vector.shape}, model expects ({layout.size},)"
        )
    with warnings.catch_warnings():  # a shared read-only vector: only read from here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        source = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float32))
    offset = 0
    with torch.no_grad():
        for tensor in module.state_dict().values():
            n = tensor.numel()
            tensor.copy_(source[offset : offset + n].view_as(tensor))
            offset += n


def to_safetensors(vector: Vector, layout: Layout) -> bytes:
    """Serialize a flat vector with its layout as safetensors bytes (one tensor per entry)."""
    if vector.shape != (layout.size,):
        raise FedledgerError(f"weight vector has shape {vector.shape}, layout has {layout.size}")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for name, shape in layout.entries:
        n = int(np.prod(shape))
        tensors[name] = np.ascontiguousarray(vector[offset : offset + n], dtype=np.float32).reshape(
            shape
        )
        offset += n
    order = ",".join(name for name, _ in layout.entries)
    return st_save(tensors, metadata={"fedledger.order": order})


def from_safetensors(data: bytes) -> tuple[Vector, Layout]:
    """Inverse of :func:`to_safetensors`; raises FedledgerError on malformed bytes."""
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises several types for bad input
        raise FedledgerError(f"not valid safetensors bytes: {exc}") from None
    order = _read_order(data) or list(tensors)
    if sorted(order) != sorted(tensors):
        raise FedledgerError(
            f"safetensors order must name each stored tensor exactly once; order {order}, "
            f"tensors {sorted(tensors)}"
        )
    layout = Layout(tuple((n, tuple(tensors[n].shape)) for n in order))
    if not order:
        return np.zeros(0, dtype=np.float32), layout
    vector = np.concatenate([tensors[n].astype(np.float32).reshape(-1) for n in order])
    return vector, layout


def _read_order(data: bytes) -> list[str]:
    """Tensor order stored in the safetensors header metadata, if any."""
    if len(data) < 8:
        return []
    (header_len,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + header_len])
    except ValueError:
        return []
    order = header.get("__metadata__", {}).get("fedledger.order", "")
    return [n for n in order.split(",") if n]
