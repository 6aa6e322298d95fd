"""Command-line inputs checked when they are read: numbers in range, devices this machine has,
output folders that can be written. A mistake is reported before any work starts, in one line
naming the option.
"""

from __future__ import annotations

import argparse
import re

_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:(\d+))?")


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def split_name(text: str) -> str:
    """An ``argparse`` type: a qrels split name (``test``), never a path."""
    from robustir.data import check_name

    try:
        return check_name(text, "split")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def device(text: str) -> str:
    """An ``argparse`` type: a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``, ``xpu``)."""
    match = _DEVICE.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use cpu, cuda, cuda:<index>, mps or xpu")
    kind, index = match.group(1), match.group(3)
    if kind == "cuda":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError("CUDA is not available here; use --device cpu")
        if index is not None and int(index) >= count:
            raise argparse.ArgumentTypeError(
                f"no CUDA device {index}: this machine has {count} (0 to {count - 1})")
    if kind == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("MPS is not available here; use --device cpu")
    return text


def check_output_folders(**folders: str | None) -> None:
    """Check before any work that each named folder can be created and written.

    Args:
        **folders: Option name (``output``, ``cache_dir``) to folder; ``None`` ones are skipped.

    Raises:
        OSError: A folder cannot be written; the message names the option and the folder.
    """
    from robustir.cache import writable_folder

    for option, folder in folders.items():
        if folder is not None:
            writable_folder(folder, f"--{option.replace('_', '-')}")
