"""How the CLI talks to a person (readable text) or a script (`--json`), and its errors and exit codes.

Exit codes: 0 success; 1 an error of the command (bad input, missing file, failed verification);
2 usage error (argparse); 3 the node or the chain refused (with the refusal code); 4 the node is unreachable;
130 interrupted.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class CliError(Exception):
    """A one-line error for the person at the terminal."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Output:
    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    def result(self, data: Any, human: str | None = None) -> None:
        """The command's result: JSON on stdout with --json, else the human text (or a rendering of data)."""
        if self.as_json:
            json.dump(data, sys.stdout, indent=2, sort_keys=False, default=_default)
            sys.stdout.write("\n")
        else:
            print(human if human is not None else render(data))

    def progress(self, message: str) -> None:
        """Progress of long work: on stderr, so stdout stays clean for --json."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def _default(o: object) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(f"cannot render {type(o).__name__}")


def render(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for k, v in data.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines.append(render(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    if isinstance(data, list):
        if not data:
            return f"{pad}(none)"
        out = []
        for item in data:
            if isinstance(item, dict):
                body = render(item, indent + 1).lstrip()
                out.append(f"{pad}- {body}")
            else:
                out.append(f"{pad}- {_scalar(item)}")
        return "\n".join(out)
    return f"{pad}{_scalar(data)}"


def _scalar(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list) and not v:
        return "[]"
    if isinstance(v, dict) and not v:
        return "{}"
    return str(v)
