"""Command-line flags as users expect them, for every kcl-models CLI."""
from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

__all__ = ["FlagParser"]


class FlagParser(argparse.ArgumentParser):
    """argparse as users expect it: no prefix abbreviations (``--out`` is not ``--output``), both
    spellings of every long flag (``--data-root`` and ``--data_root``), and "did you mean" for an
    unknown flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def _long_flags(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]

    def _spell(self, argv: list[str]) -> list[str]:
        flags = set(self._long_flags())
        out: list[str] = []
        for i, tok in enumerate(argv):
            if tok == "--":
                return out + argv[i:]
            if tok.startswith("--") and len(tok) > 2:
                name, eq, value = tok.partition("=")
                alt = name.replace("_", "-")
                if name not in flags and alt in flags:
                    tok = alt + eq + value
            out.append(tok)
        return out

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._spell(argv), namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self.unknown_message(extras))
        return parsed

    def unknown_message(self, extras: list[str]) -> str:
        flags = self._long_flags()
        unknown = [e.partition("=")[0] for e in extras if e.startswith("-")]
        if not unknown:
            return f"unrecognized arguments: {' '.join(extras)}"
        parts = []
        for flag in unknown:
            wanted = flag.replace("_", "-")
            close = [f for f in flags if f.startswith(wanted)]  # what an abbreviation meant
            close += [f for f in difflib.get_close_matches(wanted, flags, n=3, cutoff=0.6) if f not in close]
            parts.append(f"unrecognized argument {flag}" + (f"; did you mean {' or '.join(close[:3])}?" if close
                                                            else "; see --help"))
        return "; ".join(parts)
