"""The exception hierarchy of mska-core.

Every error a user can cause derives from :class:`MskaError`. The command line turns one into a
single line on stderr and exit code 2; library callers catch the class that fits.
"""

from __future__ import annotations


class MskaError(Exception):
    """Base class of every error mska-core raises on purpose.

    The message is one line that says what was expected, what was found and where, and what to do.
    """


class PluginError(MskaError):
    """A plugin failed to load or returned something the core cannot use."""


class RegistryError(MskaError):
    """A look-up in the registry failed: an unknown name, or two providers of one name."""


class UnknownNameError(RegistryError, KeyError):
    """A name that no registered plugin supplies; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(RegistryError):
    """Two plugins supply a record with one name; the message names both providers."""


class ConfigError(MskaError):
    """A configuration file or override is wrong: unknown key, wrong type, missing file."""


class BackboneError(MskaError):
    """A backbone spec cannot be resolved or its weights do not fit the architecture."""


class CheckpointError(MskaError):
    """A checkpoint cannot be read, is unsafe, or does not fit where it is loaded."""


class UnsafeCheckpointError(CheckpointError):
    """A file whose pickle would import or call something outside the allow-list."""


class DataError(MskaError):
    """Input data (keypoints, crops, pickles, vocabularies) is missing or malformed."""


class RunFolderError(ConfigError):
    """A run folder cannot be used: another run holds it, it already holds a run, or it is not writable."""


class ExportError(MskaError):
    """A model cannot be exported (crop streams, a missing exporter package), or an exported artefact
    cannot be read or does not reproduce its checkpoint."""
