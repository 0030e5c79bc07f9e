"""Readers of real data (the data sources), crop folders, augmentation and batching.

:class:`Sample` and :class:`Corpus` are what a data source's ``open`` returns (see
:class:`mska_core.records.DataSource`); the built-in sources are in :mod:`mska_core.data.sources`.
"""

from mska_core.data.samples import Corpus, Sample

__all__ = ["Corpus", "Sample"]
