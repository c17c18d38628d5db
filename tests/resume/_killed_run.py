"""A resumable run that prints each output as the caller takes it: the kill test's child.

python -m tests.resume._killed_run STATE N
"""

from __future__ import annotations

import sys

from olympipe import Pipeline
from tests.resume._fns import not_multiple_of_5, times_3


def main() -> None:
    state, n = sys.argv[1], int(sys.argv[2])
    out = sys.stdout
    for batch in Pipeline(range(n), resume=state).task(times_3, count=2).filter(not_multiple_of_5).batch(10):
        out.write("".join(f"{x}\n" for x in batch))
        out.flush()


if __name__ == "__main__":
    main()
