"""Errors a user can cause, importable without loading torch (the CLI catches them)."""


class ArtifactError(Exception):
    """An artifact that cannot be written or loaded; the message names the folder and why."""
