"""Declaring the actions a module reads, and loading them validated, with file and line.

An infrastructure module states what it accepts::

    SERVICE = ActionSpec("zinit.service", {
        "name": Field("str", required=True),
        "cmd": Field("str", required=True),
        "port": Field("u32"),
        "autostart": Field("bool", default=True),
    })

and ``SERVICE.load(action)`` returns a plain dict of typed values, or raises
``ParseError`` naming the file, the line of the bad value and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herofossil.errors import ParseError

from .heroscript import Action, Playbook

_GETTERS = {
    "str": "get_str",
    "int": "get_int",
    "u32": "get_u32",
    "u64": "get_u64",
    "float": "get_float",
    "percentage": "get_percentage",
    "bool": "get_bool",
    "list": "get_list",
    "list_int": "get_list_int",
    "size": "get_storagesize",
    "duration": "get_duration",
}


@dataclass(frozen=True)
class Field:
    """One parameter: its type (a key of ``_GETTERS``), whether required, a default."""

    type: str = "str"
    required: bool = False
    default: Any = None
    choices: tuple = ()

    def __post_init__(self):
        if self.type not in _GETTERS:
            raise ValueError(f"unknown field type {self.type!r}; one of {sorted(_GETTERS)}")


@dataclass(frozen=True)
class ActionSpec:
    """The parameters an action ``actor.name`` takes; unknown keys are errors."""

    action: str
    fields: dict[str, Field] = field(default_factory=dict)
    allow_args: bool = False

    def load(self, action: Action) -> dict[str, Any]:
        """The action's parameters, typed and checked against this spec."""
        params = action.params
        for key in params.keys():
            if key not in self.fields:
                param = params.param(key)
                raise ParseError(
                    f"{self.action}: unknown parameter {key!r} (expected one of "
                    f"{', '.join(sorted(self.fields))})", action.file,
                    getattr(param, "line", None) or action.line)
        if params.args and not self.allow_args:
            raise ParseError(f"{self.action}: unexpected argument {params.args[0]!r}",
                             action.file, action.line)
        out: dict[str, Any] = {}
        for key, spec in self.fields.items():
            if not params.exists(key):
                if spec.required:
                    raise ParseError(f"{self.action}: missing required parameter {key!r}",
                                     action.file, action.line)
                out[key] = spec.default
                continue
            value = getattr(params, _GETTERS[spec.type])(key)
            if spec.choices and value not in spec.choices:
                param = params.param(key)
                raise ParseError(
                    f"{self.action}: {key} must be one of {', '.join(map(str, spec.choices))}, "
                    f"not {value!r}", action.file, getattr(param, "line", None) or action.line)
            out[key] = value
        return out


def load_all(playbook: Playbook, specs: list[ActionSpec], *,
             actor: str | None = None) -> list[tuple[Action, dict[str, Any]]]:
    """Every action matching one of ``specs``, loaded; with ``actor``, any other action of
    that actor is an error (a typo in an action name is not silently ignored)."""
    by_name = {s.action: s for s in specs}
    out = []
    for action in playbook.actions:
        spec = by_name.get(action.fullname)
        if spec is None:
            if actor is not None and action.actor == actor:
                raise ParseError(f"unknown action {action.fullname!r} (expected "
                                 f"{', '.join(sorted(by_name))})", action.file, action.line)
            continue
        out.append((action, spec.load(action)))
    return out
