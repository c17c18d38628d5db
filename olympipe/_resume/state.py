"""The progress file of a resumable run, written so that no crash can leave it half written.

Layout: :data:`MAGIC`, a JSON header line, the finished keys (8 bytes each, ``resume_key``
runs only), then a BLAKE2b checksum of everything before it. A save writes a new file
beside the old one, flushes it to the disk (``fsync``) and renames it over the old one: a
power cut leaves either the old file or the new one, and a torn or foreign file fails its
magic or its checksum on load instead of being taken for progress. The directory is not
flushed after each rename: a power cut may then bring back the previous file, which is
older progress, never wrong progress (its items run again), and saves a second ``fsync``
per write.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from olympipe.errors import ProgressFileError

MAGIC = b"OLYMPIPE-PROGRESS\n"
FORMAT = 1
KEY_BYTES = 8
_SUM_BYTES = 16


@dataclass
class Progress:
    """What a progress file says."""

    fingerprint: str
    keyed: bool  # by resume_key(item) rather than by position
    done: int = 0  # by position: every source item before it is finished
    finished: bool = False  # the whole run finished
    keys: set[bytes] = field(default_factory=set)  # keyed: digests of the finished items
    stages: list[str] = field(default_factory=list)  # the graph's stage names, for messages


def load(path: str) -> Progress | None:
    """The progress recorded at ``path``; ``None`` when there is no file yet.

    Raises:
        ProgressFileError: the file is not a progress file, or is damaged."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if not data.startswith(MAGIC):
        raise ProgressFileError(f"{path} is not an olympipe progress file; it was left as it is")
    body, checksum = data[:-_SUM_BYTES], data[-_SUM_BYTES:]
    if len(data) < len(MAGIC) + _SUM_BYTES or _checksum(body) != checksum:
        raise ProgressFileError(
            f"{path} is damaged (truncated or changed by hand); it was left as it is: delete it"
            " to start the run over"
        )
    end = body.index(b"\n", len(MAGIC))
    header: dict[str, Any] = json.loads(body[len(MAGIC) : end])
    if header.get("format") != FORMAT:
        raise ProgressFileError(f"{path} was written by another version of olympipe; it was left as it is")
    blob = body[end + 1 :]
    keys = {blob[i : i + KEY_BYTES] for i in range(0, len(blob), KEY_BYTES)}
    return Progress(
        fingerprint=header["fingerprint"],
        keyed=header["keyed"],
        done=header["done"],
        finished=header["finished"],
        keys=keys,
        stages=header.get("stages", []),
    )


def save(path: str, progress: Progress) -> None:
    """Write ``progress`` to ``path`` atomically and durably."""
    header = {
        "format": FORMAT,
        "fingerprint": progress.fingerprint,
        "keyed": progress.keyed,
        "done": progress.done,
        "finished": progress.finished,
        "stages": progress.stages,
    }
    body = MAGIC + json.dumps(header).encode() + b"\n" + b"".join(progress.keys)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(body + _checksum(body))
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_SUM_BYTES).digest()
