"""The builder's argument checks: a bad argument fails when the stage is built, with the
argument's name, never later in a worker."""

from __future__ import annotations

from olympipe._core.flow import check_on_full


def _name_of(fn: object, default: str) -> str:
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else default


def _check_callable(value: object, what: str) -> None:
    if not callable(value):
        raise TypeError(f"{what} must be callable, got {type(value).__name__}")


def _check_int(value: object, what: str, at_least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < at_least:
        raise ValueError(f"{what} must be >= {at_least}, got {value}")


def _check_positive_int(value: object, what: str) -> None:
    _check_int(value, what, 1)


def _check_count(value: object) -> tuple[int, bool]:
    """``count``: a positive int, or ``"auto"`` (the engine sizes the stage); returns the
    workers to plan with and whether the count is automatic."""
    if isinstance(value, str):
        if value == "auto":
            return 1, True
        raise ValueError(f'count must be a positive int or "auto", got {value!r}')
    _check_positive_int(value, "count")
    return value, False  # type: ignore[return-value]


def _check_items_per_worker(value: object) -> None:
    if value is not None:
        _check_int(value, "max_items_per_worker", 1)


def _check_retries(retries: object, retry_on: object) -> tuple[type[BaseException], ...]:
    _check_int(retries, "retries", 0)
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not kinds or not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        raise TypeError(f"retry_on must be an exception class or a tuple of them, got {retry_on!r}")
    return kinds


def _check_bool(value: object, what: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {type(value).__name__}")


def _check_stage_on_full(on_full: object, on_error: object, max_items_per_worker: object) -> None:
    check_on_full(on_full)
    if on_full != "block" and (on_error is not None or max_items_per_worker is not None):
        raise ValueError(
            f"on_full={on_full!r} cannot be combined with on_error or max_items_per_worker"
            " (a stage whose workers are replaced keeps every chunk it was sent)"
        )


def _check_seconds(value: object, what: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{what} must be a number of seconds, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{what} must be > 0, got {value}")
