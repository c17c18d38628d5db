"""The exception types a pipeline run raises; the only module users need to catch from."""

from __future__ import annotations

import os
import signal

__all__ = ["PipelineError", "PipelineExecutionError", "ProgressFileError", "RemoteTraceback", "WorkerDied"]


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process.

    Set as the ``__cause__`` of the original exception once it is rebuilt in the caller, so
    that Python prints the worker's frames under the caller's own traceback.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class PipelineError(RuntimeError):
    """A stage of a pipeline failed; the run has been stopped and cleaned up.

    ``stage`` names the stage (``"source"`` for the source iterable), ``item_repr`` is a
    short repr of the item being processed (``None`` when there was none) and
    ``remote_traceback`` the worker's formatted traceback. ``__cause__`` is the original
    exception when it could be carried across processes.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str,
        item_repr: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.item_repr = item_repr
        self.remote_traceback = remote_traceback

    @property
    def errors(self) -> list[str]:
        """The error messages, as olympipe 2.x's ``PipelineExecutionError.errors`` gives them."""
        return [str(self)]

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_pipeline_error,
            (type(self), self.args[0] if self.args else "", self.__dict__),
        )


def _rebuild_pipeline_error(
    cls: type[PipelineError], message: str, state: dict[str, object]
) -> PipelineError:
    err = cls.__new__(cls)
    RuntimeError.__init__(err, message)
    err.__dict__.update(state)
    return err


#: The olympipe 2.x name of :class:`PipelineError`; the same class.
PipelineExecutionError = PipelineError


def describe_exitcode(exitcode: int | None) -> str:
    """Name an exit code the way a person reads it: ``SIGKILL(-9)``, ``EXIT(3)``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"{signal.Signals(-exitcode).name}({exitcode})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"EXIT({exitcode})"


class WorkerDied(PipelineError):
    """A worker process exited without finishing its stream (a signal, ``os._exit``, OOM).

    ``exitcode`` is the process's exit code where the engine knows it (``None`` on Ray,
    whose ``detail`` says what Ray reported)."""

    def __init__(self, *, stage: str, exitcode: int | None, detail: str | None = None) -> None:
        how = describe_exitcode(exitcode) if detail is None else detail
        super().__init__(
            f"a worker of stage {stage!r} died unexpectedly with {how}"
            " (killed, os._exit, a crash in native code, or out of memory?)",
            stage=stage,
        )
        self.exitcode = exitcode


_ALSO: dict[type[Exception], type[PipelineError]] = {}


def _also(cause: type[Exception]) -> type[PipelineError]:
    """A :class:`PipelineError` that is also an instance of ``cause``, so that
    ``except ValueError`` catches a stage's ``ValueError`` as ``except PipelineError``
    does (Ray's ``as_instanceof_cause``); plain :class:`PipelineError` where the two
    cannot be combined (an ``OSError``'s layout, a final class)."""
    made = _ALSO.get(cause)
    if made is None:
        try:
            made = type(
                f"PipelineError({cause.__name__})",
                (PipelineError, cause),
                {
                    "__module__": __name__,
                    "__str__": BaseException.__str__,  # not KeyError's quoting of the message
                    "__reduce__": _reduce_also,
                    "__init__": PipelineError.__init__,
                },
            )
        except Exception:  # layouts that cannot be combined (TypeError), a class refusing subclasses
            made = PipelineError
        _ALSO[cause] = made
    return made


def _reduce_also(self: PipelineError) -> tuple[object, ...]:
    cause = next(c for c in type(self).__mro__[2:] if c not in PipelineError.__mro__)
    return (_rebuild_also, (cause, self.args[0] if self.args else "", self.__dict__))


def _rebuild_also(cause: type[Exception], message: str, state: dict[str, object]) -> PipelineError:
    return _rebuild_pipeline_error(_also(cause), message, state)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CHAINED = ("\nThe above exception was the direct cause", "\nDuring handling of the above exception")


def _frames_only(text: str) -> str:
    """A worker's formatted traceback as printed under its exception: its frames without
    the exception's own line (the cause printed next says it) and without olympipe's frames
    that called the user's code. A traceback of chained exceptions is kept whole."""
    if any(marker in text for marker in _CHAINED):
        return text
    lines = text.rstrip("\n").splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith("  ")), default=-1)
    if last_frame < 1:
        return text
    head, frames = lines[0], lines[1 : last_frame + 1]
    starts = [i for i, line in enumerate(frames) if line.startswith('  File "')]
    for i in starts:
        path = frames[i][len('  File "') :].split('"', 1)[0]
        if not os.path.abspath(path).startswith(_PACKAGE):
            frames = frames[i:]
            break
    return "\n".join([head, *frames]) + "\n"


def stage_error(
    stage: str,
    message: str,
    item_repr: str | None,
    remote_traceback: str,
    cause: BaseException | None,
) -> PipelineError:
    """The error a terminal call raises for a stage's failure, whichever engine ran it.

    ``cause`` (the original exception, rebuilt in the caller) becomes ``__cause__``, with
    the worker's traceback chained under it so that Python prints both."""
    if cause is not None and cause.__cause__ is None and cause.__traceback__ is None:
        cause.__cause__ = RemoteTraceback(_frames_only(remote_traceback))
    where = f"stage {stage!r}" if stage != "source" else "the source"
    on_item = f" on item {item_repr}" if item_repr is not None else ""
    kind = PipelineError
    if isinstance(cause, Exception) and not isinstance(cause, PipelineError):
        kind = _also(type(cause))
    error = kind(
        f"{where} failed{on_item}: {message}",
        stage=stage,
        item_repr=item_repr,
        remote_traceback=remote_traceback,
    )
    error.__cause__ = cause if cause is not None else RemoteTraceback(remote_traceback)
    return error


class ProgressFileError(ValueError):
    """A ``resume=`` progress file that cannot be used: not an olympipe progress file,
    damaged, or written by another graph. The file is left as it is."""
