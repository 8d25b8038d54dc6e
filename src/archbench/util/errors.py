"""Typed errors a user can act on; owns the error vocabulary, never decides exit codes (the CLI does)."""

from __future__ import annotations


class ArchbenchError(Exception):
    """Base class: every message says which file or key, what was expected, and what to do."""


class ConfigError(ArchbenchError):
    """A sweep file or override is invalid. The CLI exits with code 2 and creates nothing."""


class UnknownModelError(ConfigError):
    """A model name that is not in the registry (names are looked up, never imported)."""


class OutputError(ArchbenchError):
    """The results folder cannot be created or written (a file in the way, read-only, no space)."""


class DatasetError(ArchbenchError):
    """A dataset is missing, malformed or unsafe; names the file and what is wrong with it."""


class CheckpointError(ArchbenchError):
    """A checkpoint is truncated, empty, corrupted or carries something other than tensors."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"checkpoint {path}: {reason}")
        self.path = path
        self.reason = reason


class MissingWeightsError(ArchbenchError):
    """Pretrained weights are not on this machine and there is no network to fetch them."""


class RunFailure(ArchbenchError):
    """A run failed for a reason that belongs in its record (non-finite loss, OOM, disk full)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RunPruned(Exception):
    """Raised from a per-epoch callback when a tuning trial is pruned; the run is recorded as `pruned`."""


class RunKilled(Exception):
    """Raised by the trainer at a step boundary after SIGTERM/SIGINT, once the `last` checkpoint is safely
    written; the run is recorded as `killed` and resumes from `last`."""
