"""What workers and feeders tell the supervisor over the control channel."""

from __future__ import annotations

import pickle
import reprlib
import traceback
from dataclasses import dataclass
from typing import Any

from olympipe._transport.channel import Channel
from olympipe._transport.codec import dumps
from olympipe.errors import PipelineError, stage_error

_repr = reprlib.Repr()  # a formatter, set once: never written after import
_repr.maxstring = 80
_repr.maxother = 80
_repr.maxlist = 6
_repr.maxdict = 6
_repr.maxtuple = 6


def short_repr(value: object) -> str:
    """A repr short enough for an error message."""
    try:
        return _repr.repr(value)
    except Exception as exc:  # a user __repr__ that raises must not hide the real error
        return f"<{type(value).__name__} object (repr failed: {type(exc).__name__})>"


def pack_exception(exc: BaseException) -> bytes | None:
    """Pickle an exception so that the caller can rebuild it as an instance of its class.

    An exception whose ``__init__`` takes other arguments than its ``args`` pickles but
    fails to unpickle; it then travels as its class, ``args`` and attributes, and is rebuilt
    without calling ``__init__``."""
    try:
        data = dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        pass
    try:
        state = {k: v for k, v in vars(exc).items() if _pickles(v)}
        return dumps(_Rebuilt(type(exc), exc.args if _pickles(exc.args) else (), state))
    except Exception:  # a class that cannot be imported by name (defined in a function)
        return None


def _pickles(value: object) -> bool:
    try:
        dumps(value)
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class _Rebuilt:
    cls: type[BaseException]
    args: tuple[Any, ...]
    state: dict[str, Any]


def unpack_exception(data: bytes) -> BaseException | None:
    """The inverse of :func:`pack_exception`; ``None`` when the class cannot be loaded here."""
    try:
        value = pickle.loads(data)
    except Exception:
        return None
    if isinstance(value, _Rebuilt):
        exc = value.cls.__new__(value.cls)
        exc.args = value.args
        exc.__dict__.update(value.state)
        return exc
    return value if isinstance(value, BaseException) else None


@dataclass(frozen=True)
class Failure:
    """A stage's error, ready to cross a process boundary."""

    stage: str
    message: str
    item_repr: str | None
    traceback: str
    exception: bytes | None  # the pickled exception, when it pickles

    @classmethod
    def capture(
        cls,
        stage: str,
        exc: BaseException,
        item: object = None,
        has_item: bool = False,
        message: str | None = None,
    ) -> Failure:
        """Describe ``exc`` raised by ``stage`` while processing ``item``."""
        text = "".join(traceback.format_exception(exc))
        exc.__traceback__ = None  # frames would pin the item's memory and may not pickle
        item_repr = short_repr(item) if has_item else None
        if message is None:
            message = f"{type(exc).__name__}: {exc}"
        return cls(stage, message, item_repr, text, pack_exception(exc))

    def to_error(self) -> PipelineError:
        """The :class:`PipelineError` the caller raises, the original exception as its cause."""
        cause = unpack_exception(self.exception) if self.exception is not None else None
        return stage_error(self.stage, self.message, self.item_repr, self.traceback, cause)


@dataclass(frozen=True)
class Done:
    """Worker ``worker`` finished its stream cleanly."""

    worker: int


@dataclass(frozen=True)
class Retired:
    """Worker ``worker`` did its ``max_items_per_worker`` and exited: replace it. With
    ``shrink``: it took a retire request of a resizable stage; its place stays empty."""

    worker: int
    shrink: bool = False


class Control:
    """The many-to-one channel on which workers and feeders report to the supervisor."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def send(self, message: Failure | Done | Retired) -> None:
        """Report ``message``; never raises (the supervisor notices a silent death anyway)."""
        try:
            self.channel.send(pickle.dumps(message))
        except (OSError, ValueError, pickle.PicklingError):
            pass

    def recv(self) -> Any:
        """The next message (supervisor side)."""
        return pickle.loads(self.channel.recv())
