"""Typed records from loose values (environment variables, flags, YAML): frozen dataclasses whose fields say how a
value is read and checked, with every problem collected under the name of its field.

Not pydantic: a run reads a dozen settings, and building pydantic models cost more start-up time than an unchanged
create's own work (issue 13). The messages are the ones users knew from it ("Input should be a valid integer").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: Reads one value: returns it converted, or raises ValueError (BadValue) with the message for the user.
Check = Callable[[Any], Any]
Record = TypeVar("Record", bound="DataclassInstance")

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


class BadValue(ValueError):
    """A value a check refuses; `at` says where inside it (a list's index) and `value` what was found there."""

    def __init__(self, message: str, at: tuple[int, ...], value: Any) -> None:
        super().__init__(message)
        self.at = at
        self.value = value


@dataclasses.dataclass(frozen=True)
class Problem:
    """One value that does not fit its field."""

    #: The field, then the position inside its value.
    loc: tuple[str | int, ...]
    message: str
    #: What was given there.
    value: Any
    #: The key is no field of the record.
    unknown: bool = False

    @property
    def field(self) -> str:
        return str(self.loc[0])


class Invalid(ValueError):
    """The values do not make a record: every problem, in the order of the values."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}" for p in problems))
        self.problems = problems


def field(default: Any, *checks: Check, secret: bool = False) -> Any:
    """A field whose value goes through `checks` in turn; None is taken as is where it is the default, and once a
    check returns None (an empty string that means unset) the others are skipped. A secret stays out of repr."""
    return dataclasses.field(default=default, repr=not secret, metadata={"checks": checks, "secret": secret})


def names(record: type[DataclassInstance]) -> list[str]:
    return [f.name for f in dataclasses.fields(record)]


def secrets(record: type[DataclassInstance]) -> set[str]:
    """The fields made with `secret=True`: their values are never shown."""
    return {f.name for f in dataclasses.fields(record) if f.metadata.get("secret")}


def build(record: type[Record], values: Mapping[str, Any]) -> Record:
    """The record of `values`, each read by its field's checks; raises Invalid with every problem."""
    fields = {f.name: f for f in dataclasses.fields(record)}
    problems = []
    read: dict[str, Any] = {}
    for name, value in values.items():
        found = fields.get(name)
        if found is None:
            problems.append(Problem((name,), "Extra inputs are not permitted", value, unknown=True))
            continue
        try:
            read[name] = _checked(value, found)
        except BadValue as exc:
            problems.append(Problem((name, *exc.at), str(exc), exc.value))
        except ValueError as exc:
            problems.append(Problem((name,), str(exc), value))
    if problems:
        raise Invalid(problems)
    return record(**read)


def _checked(value: Any, found: dataclasses.Field[Any]) -> Any:
    if value is None and found.default is None:
        return None
    for check in found.metadata.get("checks", ()):
        value = check(value)
        if value is None:
            break
    return value


# -- checks ------------------------------------------------------------------------------------------------------


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("Input should be a valid string")
    return value


def stripped(value: Any) -> str | None:
    """Text without surrounding blanks; an empty value means unset."""
    return text(value).strip() or None


def integer(*, gt: int | None = None, ge: int | None = None, le: int | None = None) -> Check:
    """An integer (a number without a fraction, or its digits as text) within the bounds."""

    def check(value: Any) -> int:
        number = _integer(value)
        if gt is not None and number <= gt:
            raise ValueError(f"Input should be greater than {gt}")
        if ge is not None and number < ge:
            raise ValueError(f"Input should be greater than or equal to {ge}")
        if le is not None and number > le:
            raise ValueError(f"Input should be less than or equal to {le}")
        return number

    return check


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("Input should be a valid integer, got a number with a fractional part")
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError("Input should be a valid integer, unable to parse string as an integer") from None
    raise ValueError("Input should be a valid integer")


def boolean(value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0 (in any case), or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def choice(*options: str) -> Check:
    quoted = [repr(o) for o in options]
    expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]

    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"Input should be {expected}")
        return str(value)

    return check


def strings(value: Any) -> tuple[str, ...]:
    """A list of texts, kept as a tuple."""
    if not isinstance(value, list | tuple):
        raise ValueError("Input should be a valid list")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise BadValue("Input should be a valid string", (index,), item)
    return tuple(value)


def matching(*patterns: str, message: str) -> Check:
    """Text that one of the regular expressions matches at its start."""

    def check(value: Any) -> str:
        if not any(re.match(pattern, value) for pattern in patterns):
            raise ValueError(message)
        return str(value)

    return check
