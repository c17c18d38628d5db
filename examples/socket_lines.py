"""A TCP socket as a source: a generator reads newline-delimited JSON from a connection.

    python examples/socket_lines.py [--messages 2000]

A tiny local sender (a thread, on loopback) streams sensor readings; the generator owns the
socket in the caller's process (a socket cannot cross processes) and is pulled only as
fast as the pipeline drains it. The pipeline parses, filters out-of-range readings and
aggregates per sensor.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from olympipe import Pipeline


def sender(server: socket.socket, messages: int) -> None:
    conn, _ = server.accept()
    rnd = random.Random(5)
    with conn:
        for i in range(messages):
            reading = {"sensor": f"s{i % 4}", "value": rnd.gauss(20, 5), "seq": i}
            conn.sendall((json.dumps(reading) + "\n").encode())


def lines(host: str, port: int) -> Iterator[bytes]:
    """The source: yields one line at a time as it arrives; closes the socket at the end."""
    with socket.create_connection((host, port)) as sock, sock.makefile("rb") as stream:
        yield from stream


def parse(line: bytes) -> dict[str, Any]:
    return json.loads(line)  # type: ignore[no-any-return]


def in_range(reading: dict[str, Any]) -> bool:
    return 5 <= reading["value"] <= 35


def add(reading: dict[str, Any], acc: dict[str, list[float]]) -> dict[str, list[float]]:
    acc.setdefault(reading["sensor"], []).append(reading["value"])
    return acc


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args(argv)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    t = threading.Thread(target=sender, args=(server, args.messages), daemon=True)
    t0 = time.perf_counter()
    p = Pipeline(lines("127.0.0.1", port)).task(parse, count=2).filter(in_range).reduce({}, add)
    p.start()  # workers fork before the sender thread exists
    t.start()
    (per_sensor,) = p.wait_for_result()
    t.join()
    server.close()
    elapsed = time.perf_counter() - t0
    kept = sum(len(v) for v in per_sensor.values())
    print(f"{args.messages} lines read from the socket in {elapsed:.2f} s, {kept} in range")
    for sensor, values in sorted(per_sensor.items()):
        print(f"  {sensor}: {len(values)} readings, mean {sum(values) / len(values):.2f}")
    return {"kept": kept, "sensors": len(per_sensor)}


if __name__ == "__main__":
    main()
