"""Building a data module as fitlens does, for the data tests."""

from __future__ import annotations

from lightning_modules.config import DataConfig
from lightning_modules.data import ArrayDataModule, build_datamodule


def setup_datamodule(**fields: object) -> ArrayDataModule:
    """The built-in data module of DataConfig(**fields), set up."""
    dm = build_datamodule(DataConfig(**fields))
    assert isinstance(dm, ArrayDataModule)
    dm.setup("fit")
    return dm
