"""The Fossil delta codec: ``create``, ``apply``, ``output_size``, ``checksum``.

Uses the compiled kernel ``herofossil.cext._delta`` when it is built and the
pure-Python reference (:mod:`herofossil.delta.reference`, which states the
format) otherwise; both give the same bytes. Every malformed delta raises
:class:`~herofossil.errors.DeltaError`, and the checksum is always checked.
``IMPLEMENTATIONS`` maps a name to each available codec so tests run one body
against all of them.
"""

from __future__ import annotations

from types import ModuleType

from herofossil.errors import DeltaError

from . import reference

try:
    from herofossil.cext import _delta as _cdelta
except ImportError:  # not built: the reference serves
    _cdelta = None

__all__ = ["IMPLEMENTATIONS", "apply", "checksum", "create", "output_size"]


class CythonCodec:
    """The compiled codec, with its ``ValueError`` turned into ``DeltaError``."""

    def __init__(self, kernel: ModuleType):
        self._kernel = kernel

    def create(self, source: bytes, target: bytes, budget: int = -1) -> bytes | None:
        """Return a delta that carries ``source`` into ``target``; None past ``budget``."""
        try:
            return self._kernel.create(source, target, budget)
        except ValueError as e:
            raise DeltaError(str(e)) from None

    def apply(self, source: bytes, delta: bytes) -> bytes:
        """Apply ``delta`` to ``source``; raise DeltaError if it is malformed."""
        try:
            return self._kernel.apply(source, delta)
        except ValueError as e:
            raise DeltaError(str(e)) from None

    def output_size(self, delta: bytes) -> int:
        """Size of the target that ``delta`` produces."""
        try:
            return self._kernel.output_size(delta)
        except ValueError as e:
            raise DeltaError(str(e)) from None

    def checksum(self, data: bytes) -> int:
        """Fossil's 32-bit checksum of ``data``."""
        return self._kernel.checksum(data)


IMPLEMENTATIONS: dict[str, object] = {"reference": reference}
if _cdelta is not None:
    IMPLEMENTATIONS["cython"] = CythonCodec(_cdelta)

_codec = IMPLEMENTATIONS.get("cython", reference)


def create(source: bytes, target: bytes, budget: int | None = None) -> bytes | None:
    """Return a Fossil-format delta that carries ``source`` into ``target``.

    With ``budget``, give up (return None) once that many candidate source
    blocks were tried; the delta, when there is one, is the same. The
    reference codec has no budget: it always completes.
    """
    if budget is None or _codec is reference:
        return _codec.create(source, target)
    return _codec.create(source, target, budget)


def apply(source: bytes, delta: bytes) -> bytes:
    """Apply a Fossil-format ``delta`` to ``source``; raise DeltaError if malformed."""
    return _codec.apply(source, delta)


def output_size(delta: bytes) -> int:
    """Size of the target that ``delta`` produces; raise DeltaError if unreadable."""
    return _codec.output_size(delta)


def checksum(data: bytes) -> int:
    """Fossil's 32-bit delta checksum of ``data``."""
    return _codec.checksum(data)
