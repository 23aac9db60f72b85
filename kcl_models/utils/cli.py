"""argparse as users expect it, for every kcl-models command line.

- ``--out-dir`` and ``--out_dir`` are the same flag (each multi-word flag is declared with dashes;
  underscores in a typed flag are read as dashes, so ``--help`` lists each flag once);
- no prefix abbreviations (``--epoch`` is not silently ``--epochs``);
- an unknown flag or sub-command gets "did you mean ...".
"""
from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["FlagParser"]


class FlagParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the three rules above (sub-parsers inherit them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    @staticmethod
    def _normalize(args: Sequence[str]) -> list[str]:
        out, literal = [], False
        for arg in args:
            if arg == "--":
                literal = True
            if not literal and arg.startswith("--") and len(arg) > 2:
                name, eq, value = arg.partition("=")
                arg = name.replace("_", "-") + eq + value
            out.append(arg)
        return out

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None):  # noqa: ANN201
        import sys
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self._normalize(args), namespace)

    def _all_flags(self) -> list[str]:
        flags = list(self._option_string_actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags += sub._all_flags() if isinstance(sub, FlagParser) else list(sub._option_string_actions)
        return sorted(set(flags))

    def error(self, message: str) -> NoReturn:
        hint = ""
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [a.split("=")[0] for a in unknown.group(1).split() if a.startswith("-")]
            close = {f: difflib.get_close_matches(f, self._all_flags(), n=1, cutoff=0.6) for f in flags}
            hint = "; ".join(f"did you mean {c[0]} (not {f})?" for f, c in close.items() if c)
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'?([\w.-]+)'?", choice.group(2))
            close_choice = difflib.get_close_matches(choice.group(1), options, n=1, cutoff=0.5)
            hint = f"did you mean '{close_choice[0]}'?" if close_choice else ""
        super().error(message + (f"; {hint}" if hint else ""))
