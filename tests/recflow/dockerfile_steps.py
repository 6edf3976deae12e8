"""The Dockerfile as data for tests: its instructions in order, continuation lines joined and
comments dropped, as (KEYWORD, argument text). Not a conftest: test modules import it by name."""

from __future__ import annotations

import re

_CONTINUATION = re.compile(r"\\\n")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """`[(keyword, arguments)]` of a Dockerfile (no parser directives or heredocs: ours has
    none)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = _CONTINUATION.sub(" ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, argument = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(argument.split())))
    return instructions
