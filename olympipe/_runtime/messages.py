"""What workers and feeders tell the supervisor over the control channel."""

from __future__ import annotations

import pickle
import reprlib
import traceback
from dataclasses import dataclass
from typing import Any

from olympipe._transport.channel import Channel

_repr = reprlib.Repr()
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
        try:
            payload: bytes | None = pickle.dumps(exc)
        except Exception:
            payload = None
        item_repr = short_repr(item) if has_item else None
        if message is None:
            message = f"{type(exc).__name__}: {exc}"
        return cls(stage, message, item_repr, text, payload)


@dataclass(frozen=True)
class Done:
    """Worker ``worker`` finished its stream cleanly."""

    worker: int


class Control:
    """The many-to-one channel on which workers and feeders report to the supervisor."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def send(self, message: Failure | Done) -> None:
        """Report ``message``; never raises (the supervisor notices a silent death anyway)."""
        try:
            self.channel.send(pickle.dumps(message))
        except (OSError, ValueError, pickle.PicklingError):
            pass

    def recv(self) -> Any:
        """The next message (supervisor side)."""
        return pickle.loads(self.channel.recv())
