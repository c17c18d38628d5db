"""The olympipe article's non-linear example: sort client records by what is missing.

    python examples/email_phone.py

One source, four filters, three results: records without a valid email, records with an
email but no valid phone, and complete records, all computed as one graph.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from olympipe import Pipeline

HERE = Path(__file__).parent

phone_regex = re.compile(r"[\+]?[(]?[0-9]{3}[)]?[-\s\.]?[0-9]{3}[-\s\.]?[0-9]{4,6}$")
email_regex = re.compile(r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)* ")


def make_client_data(path: Path) -> None:
    records = []
    for i in range(1000):
        email = f"client{i}@example.com" if i % 5 else f"client{i}.example.com"
        phone = f"555-{i % 1000:03d}-{i:04d}" if i % 3 else "unknown"
        records.append(f"{email} {phone}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))


def main(argv: list[str] | None = None) -> dict[str, int]:
    path = HERE / "_data" / "client_data.json"
    make_client_data(path)
    data: list[str] = json.loads(path.read_text())

    pipe = Pipeline(data)
    email_missing = pipe.filter(lambda x: not bool(email_regex.match(x)))
    email_valid = pipe.filter(lambda x: bool(email_regex.match(x)))
    phone_missing = email_valid.filter(lambda x: not bool(phone_regex.search(x)))
    all_info_ok = email_valid.filter(lambda x: bool(phone_regex.search(x)))
    res_invalid_email, res_invalid_phone, res_ok = Pipeline.wait_for_all_results(
        [email_missing, phone_missing, all_info_ok]
    )
    print(len(res_invalid_email), "invalid emails")
    print(len(res_invalid_phone), "valid emails without a valid phone")
    print(len(res_ok), "valid client information")
    return {
        "invalid_email": len(res_invalid_email),
        "invalid_phone": len(res_invalid_phone),
        "ok": len(res_ok),
    }


if __name__ == "__main__":
    main()
