"""Errors raised on bad input: they name the file, the sample and the fix."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input. The message says which file/sample is wrong and what to do."""

    def __init__(self, message: str, *, file: str | None = None, sample: str | None = None, fix: str | None = None):
        parts = []
        if sample:
            parts.append(f"sample '{sample}'")
        if file:
            parts.append(f"file '{file}'")
        where = (", ".join(parts) + ": ") if parts else ""
        text = where + message
        if fix:
            text += f" -> {fix}"
        super().__init__(text)
        self.message = message
        self.file = file
        self.sample = sample
        self.fix = fix
