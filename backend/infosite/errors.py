"""Problems found while reading the content, and the error that fails a build.

Like MkDocs and Pelican, the builder collects every problem it finds in one pass
instead of stopping at the first, so an author fixes all of them in one go.
Every problem names the file it was found in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file: an error, or a warning (fatal in strict mode)."""

    path: Path
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning" if self.warning else "error"
        return f"{self.path}: {kind}: {self.message}"


class BuildError(Exception):
    """The site cannot be built; ``problems`` lists why, each naming a file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"The information site cannot be built ({len(problems)} problems):\n{lines}"
        )
