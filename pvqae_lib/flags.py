"""The command line's vocabulary: usage errors, number types, a parser whose errors are one line, and
the ``train`` flags made from the config dataclasses' fields.

One setting per idea: a field of :class:`~pvqae_lib.config.ModelConfig`, ``TrainConfig``,
``PriorConfig`` or ``HeadConfig`` (or the profile's ``num_train`` / ``num_test``) is a flag, named after
it (``code_dim`` -> ``--code-dim``; the prior's and the head's fields take a ``--prior-`` / ``--head-``
prefix; a field that is on by default is switched off by ``--no-NAME``), with the field's help text
and choices (``config.setting``). A new field is a new flag. Values are checked where the field is,
in ``__post_init__``; :func:`apply_settings` turns its ValueError into one line naming the flag.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, fields, replace

from .config import HeadConfig, ModelConfig, PriorConfig, Profile, ScoreConfig, TrainConfig, full_profile, quick_profile


class UsageError(ValueError):
    """A command-line mistake (one line)."""


def finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive(kind):
    def check(text):
        value = finite(text) if kind is float else kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return check


def seed_number(text):
    """A random seed: a whole number in [0, 2**32 - 1] (numpy's and torch's generators take these)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text}") from None
    if not 0 <= value <= 2 ** 32 - 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 4294967295], got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (not the whole usage block) and exits with 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# ------------------------------------------------------------------------- flags from the configs

# (section of Profile, its dataclass, the flag prefix); "profile": Profile's own sizes
SECTIONS = (("model", ModelConfig, ""), ("train", TrainConfig, ""), ("prior", PriorConfig, "prior-"),
            ("head", HeadConfig, "head-"), ("profile", Profile, ""))
SCORE_SECTIONS = (("score", ScoreConfig, ""),)      # evaluate's and predict's: how a run is scored
PROFILE_FIELDS = ("num_train", "num_test")          # the Profile fields a run sets (the rest are sections)
ALIASES = {("head", "enabled"): "--head"}           # where a flag's name is not the field's own


@dataclass(frozen=True)
class Setting:
    """One config field as a flag."""
    section: str
    name: str           # the field
    flag: str           # "--code-dim", "--prior-steps", "--no-augment", "--head"
    default: object     # the dataclass default (a bool default says which way its flag switches)
    help: str
    choices: tuple | None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--no-" if self.default is True else "--").replace("-", "_")

    def value(self, given):
        """The field's value from the parsed flag (nargs lists become tuples)."""
        return tuple(given) if isinstance(given, list) else given


def config_settings(sections=SECTIONS) -> tuple[Setting, ...]:
    """Every settable config field of ``sections`` (train's by default), in their order and the fields'."""
    out = []
    for section, cls, prefix in sections:
        for f in fields(cls):
            if section == "profile" and f.name not in PROFILE_FIELDS:
                continue
            name = prefix + f.name.replace("_", "-")
            flag = ALIASES.get((section, f.name)) or (f"--no-{name}" if f.default is True else f"--{name}")
            out.append(Setting(section, f.name, flag, f.default, f.metadata.get("help", ""),
                               f.metadata.get("choices")))
    flags = [s.flag for s in out]
    dup = {f for f in flags if flags.count(f) > 1}
    if dup:
        raise RuntimeError(f"two config fields make the same flag: {dup} (give one a name in flags.ALIASES)")
    return tuple(out)


def profile_defaults(s: Setting) -> str:
    """' (default 64; full profile 256)': the quick and the full profile's values, for the help."""
    values = [getattr(p if s.section == "profile" else getattr(p, s.section), s.name)
              for p in (quick_profile(), full_profile())]
    if s.default is True or s.default is False:
        return ""
    shown = [" ".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values]
    return f" (default {shown[0]}" + (f"; full profile {shown[1]})" if shown[1] != shown[0] else ")")


def add_config_flags(parser: argparse.ArgumentParser, sections=SECTIONS) -> None:
    """One flag per setting (default None: the profile's value), grouped by section."""
    groups = {}
    for s in config_settings(sections):
        if s.section not in groups:
            groups[s.section] = parser.add_argument_group(f"{s.section} settings")
        group = groups[s.section]
        text = (("turn off: " if s.default is True else "") + s.help + profile_defaults(s)).replace("%", "%%")
        if isinstance(s.default, bool):
            group.add_argument(s.flag, dest=s.dest, action="store_const", const=not s.default, default=None, help=text)
            continue
        kind = type(s.default[0]) if isinstance(s.default, tuple) else type(s.default)
        group.add_argument(s.flag, dest=s.dest, type=kind, choices=s.choices, default=None, help=text,
                           nargs="+" if isinstance(s.default, tuple) else None,
                           metavar=None if s.choices else {int: "N", float: "X"}.get(kind, "NAME"))


def given_settings(args, sections=SECTIONS) -> dict:
    """{Setting: value} of the config flags of ``sections`` the command line gave."""
    return {s: s.value(getattr(args, s.dest)) for s in config_settings(sections)
            if getattr(args, s.dest, None) is not None}


def show(s: Setting, value) -> str:
    """'--tau 0.0', '--no-augment', '--prior-mask-ratio 0.1 0.6'."""
    if isinstance(s.default, bool):
        return s.flag
    return f"{s.flag} {' '.join(map(str, value)) if isinstance(value, tuple) else value}"


def named_error(e: ValueError, given: dict) -> str:
    """A config's ValueError as one line led by the flags it names (by field name), else by every
    flag given for that config."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    named = [s for s in given if re.search(rf"(?<![\w-]){re.escape(s.name)}(?![\w-])", text)] or list(given)
    return (", ".join(show(s, v) for s, v in given.items() if s in named) + ": " if named else "") + text


def apply_settings(profile: Profile, given: dict) -> Profile:
    """``profile`` with the given config flags ({Setting: value}) applied, each section checked by its
    own ``__post_init__`` (UsageError naming the flags its complaint is about)."""
    parts = {}
    for section, _, _ in SECTIONS:
        mine = {s: v for s, v in given.items() if s.section == section}
        if section == "profile":
            return applied(replace(profile, **parts), mine)
        parts[section] = applied(getattr(profile, section), mine)
    raise AssertionError("SECTIONS ends with the profile")


def applied(config, given: dict):
    """``config`` (one dataclass) with the given flags of its section ({Setting: value}); its
    ``__post_init__``'s ValueError becomes a UsageError naming the flags."""
    try:
        return replace(config, **{s.name: v for s, v in given.items()})
    except ValueError as e:
        raise UsageError(named_error(e, given)) from None


# ------------------------------------------------------------------ the flag list of the documentation

def settings_table() -> str:
    """The markdown table of train's config flags (docs/command_line.md holds it; the repository's
    tools/settings_table.py renews it there)."""
    rows = ["| flag | setting | default | what it sets |", "| --- | --- | --- | --- |"]
    for s in config_settings():
        where = s.name if s.section == "profile" else f"{s.section}.{s.name}"
        default = profile_defaults(s).strip(" ()").removeprefix("default ") or ("on" if s.default else "off")
        text = ("turn off: " if s.default is True else "") + s.help
        choices = f" ({' / '.join(map(str, s.choices))})" if s.choices else ""
        rows.append(f"| `{s.flag}` | `{where}` | {default} | {text}{choices} |".replace("\n", " "))
    return "\n".join(rows)

