"""Command-line options generated from config classes, so a CLI default can never drift from its config.

A command names the fields of a config class (a pydantic model or a dataclass) it exposes;
:func:`add_config_options` adds one option per field (name, type, choices, default and help from the field,
the help taken from a pydantic ``Field(description=...)`` unless the command gives one), and
:func:`config_from_args` builds the config back from the parsed arguments. A boolean field that defaults to
True becomes a ``--no-NAME`` switch; one that defaults to False becomes ``--NAME``.

Example:
    >>> import argparse
    >>> from mechinterp.surprisal import SurprisalConfig
    >>> p = argparse.ArgumentParser()
    >>> add_config_options(p, SurprisalConfig, ["batch_size", "whitespace"])
    >>> args = p.parse_args(["--batch-size", "4"])
    >>> config_from_args(SurprisalConfig, args, ["batch_size", "whitespace"])
    SurprisalConfig(backend='hf', batch_size=4, padding_side='right', whitespace='leading')
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

from pydantic import ValidationError

from mechinterp.errors import ConfigError


@dataclass(frozen=True)
class ConfigField:
    """One field of a config class, as the command line sees it."""

    name: str
    annotation: Any
    default: Any
    description: str | None


def config_fields(config: type) -> dict[str, ConfigField]:
    """The fields of a pydantic model or dataclass, with resolved types, defaults and descriptions.

    Args:
        config: The config class.

    Returns:
        Field name -> :class:`ConfigField`. A field without a default has ``default`` set to
        ``dataclasses.MISSING``.
    """
    if hasattr(config, "model_fields"):
        out = {}
        for name, f in config.model_fields.items():
            default = dataclasses.MISSING if f.is_required() else f.get_default(call_default_factory=True)
            out[name] = ConfigField(name, f.annotation, default, f.description)
        return out
    if dataclasses.is_dataclass(config):
        module = vars(sys.modules[config.__module__])
        out = {}
        for f in dataclasses.fields(config):
            ann = f.type
            if isinstance(ann, str):
                try:
                    ann = eval(ann, dict(module))  # the module's own names, as typing.get_type_hints would
                except Exception:  # a TYPE_CHECKING-only name: fall back on the default's type
                    ann = type(f.default) if f.default is not dataclasses.MISSING else str
            default = f.default
            if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            out[f.name] = ConfigField(f.name, ann, default, f.metadata.get("help"))
        return out
    raise TypeError(f"{config!r} is neither a pydantic model nor a dataclass")


def _strip_optional(ann: Any) -> Any:
    if typing.get_origin(ann) in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def flag_of(name: str, field: ConfigField | None = None, names: dict[str, str] | None = None) -> str:
    """The option string of a field: ``--n-tokens`` for ``n_tokens``, ``--no-control`` for a True boolean.

    Args:
        name: The field name.
        field: The field (to tell a True-defaulting boolean); None for the plain form.
        names: Option names that differ from the field name (``{"d_sae": "width"}``).

    Returns:
        The option string.
    """
    base = (names or {}).get(name, name).replace("_", "-")
    if field is not None and _strip_optional(field.annotation) is bool and field.default is True:
        return f"--no-{base}"
    return f"--{base}"


def add_config_options(
    parser: argparse.ArgumentParser,
    config: type,
    fields: Sequence[str],
    *,
    names: dict[str, str] | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """Add one option per field of ``config``; the parsed value is stored under the field's name.

    Args:
        parser: The (sub)command's parser.
        config: A pydantic model or dataclass.
        fields: The fields to expose, in order.
        names: Option names that differ from the field names, e.g. ``{"d_sae": "width"}``.
        helps: Help texts for fields without a description (or to word it for the command line).

    Raises:
        TypeError: A field type the command line cannot express (give it its own option instead).
    """
    known = config_fields(config)
    for name in fields:
        f = known[name]
        ann = _strip_optional(f.annotation)
        flag = flag_of(name, f, names)
        help_ = (helps or {}).get(name) or f.description or name.replace("_", " ")
        kw: dict[str, Any] = {"dest": name}
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        if ann is bool:
            kw["action"] = "store_false" if f.default is True else "store_true"
            parser.add_argument(flag, help=help_, **kw)
            continue
        if typing.get_origin(ann) is Literal:
            choices = list(typing.get_args(ann))
            kw.update(choices=choices, type=type(choices[0]))
        elif typing.get_origin(ann) is tuple and typing.get_args(ann)[:1] == (str,):
            kw.update(type=_comma_list, metavar="A,B")
        elif ann in (int, float, str):
            kw["type"] = ann
        else:
            raise TypeError(f"{config.__name__}.{name}: no command-line form for {f.annotation!r}")
        if "choices" not in kw:
            kw.setdefault("metavar", (names or {}).get(name, name).upper())
        if "default" in kw and kw["default"] is not None:
            shown = ",".join(kw["default"]) if isinstance(kw["default"], tuple) else kw["default"]
            help_ = f"{help_} (default {shown})"
        parser.add_argument(flag, help=help_, **kw)


def config_from_args(config: type, args: argparse.Namespace, fields: Sequence[str],
                     names: dict[str, str] | None = None, **extra: Any) -> Any:
    """Build ``config`` from the options :func:`add_config_options` added, plus ``extra`` fields.

    Args:
        config: The config class.
        args: Parsed arguments.
        fields: The fields that were exposed.
        names: The same option names given to :func:`add_config_options` (for messages).
        **extra: Other fields, computed by the command.

    Returns:
        The config.

    Raises:
        ConfigError: A value the config refuses, naming the option.
    """
    kwargs = {name: getattr(args, name) for name in fields}
    kwargs.update(extra)
    try:
        return config(**kwargs)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = e["loc"][0] if e["loc"] else None
        where = flag_of(str(loc), None, names) if loc in kwargs and loc in fields else (str(loc) if loc else "options")
        raise ConfigError(f"bad {where}: {e['msg']}" + (f" (got {e['input']!r})" if loc in kwargs else "")) from None
