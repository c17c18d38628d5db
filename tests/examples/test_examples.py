"""Every example runs, on small data, so none of them rots."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from olympipe._resume.state import load

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

import bulk_images
import email_phone
import etl_csv
import image_preprocessing
import parquet_to_zip
import thumbnails


def test_image_preprocessing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = image_preprocessing.make_photos(4, tmp_path)
    got = image_preprocessing.pipeline(paths, 2, progress=False).wait_for_result()
    assert got == image_preprocessing.serial(paths)
    assert len(got) == 8


def test_thumbnails_skip_existing_on_rerun(tmp_path: Path) -> None:
    out = thumbnails.main(["--images", "3", "--data", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert out == {"made": 3, "rerun_made": 0}
    assert len(list((tmp_path / "out").glob("*.thumb.jpg"))) == 3


def test_bulk_images_reports_failures(tmp_path: Path) -> None:
    args = ["--images", "6", "--corrupt", "2", "--data", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert bulk_images.main(args) == {"done": 4, "failed": 2}


def test_parquet_to_zip_single_ordered_writer(tmp_path: Path) -> None:
    target = tmp_path / "g.zip"
    assert parquet_to_zip.main(["--images", "50", "--out", str(target)]) == {"stored": 50}
    with zipfile.ZipFile(target) as z:
        assert z.namelist()[:2] == ["Train_0.png", "Train_1.png"]


def test_etl_csv_killed_then_rerun_stores_every_row_once(tmp_path: Path) -> None:
    rows = 12_000
    args = ["--rows", str(rows), "--data", str(tmp_path / "s.csv"), "--db", str(tmp_path / "s.db")]
    args += ["--report", str(tmp_path / "r.csv")]
    script = Path(etl_csv.__file__)
    killed = subprocess.run(
        [sys.executable, str(script), *args, "--die-after", "12"], capture_output=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL
    recorded = load(str(tmp_path / "s.progress"))
    assert recorded is not None
    assert 0 < len(recorded.keys) <= 12 * 500
    result = etl_csv.main(args)
    assert result["read"] == rows - len(recorded.keys)  # went on from where it stopped
    assert result["stored"] + result["rejected"] == rows  # every row, once (ids are keys)
    assert result["rejected"] > 0
    with sqlite3.connect(tmp_path / "s.db") as db:
        ids = [row[0] for row in db.execute("SELECT id FROM sales UNION ALL SELECT id FROM rejected")]
    assert sorted(ids) == list(range(rows))
    with pytest.warns(UserWarning, match="already finished"):
        assert etl_csv.main(args)["read"] == 0


def test_email_phone() -> None:
    result = email_phone.main()
    assert result == {"invalid_email": 200, "invalid_phone": 267, "ok": 533}


def test_socket_lines() -> None:
    import socket_lines

    assert socket_lines.main(["--messages", "400"])["sensors"] == 4


def test_camera_runs_under_both_policies_and_accounts_for_every_frame() -> None:
    import camera

    block, drop = camera.main(["--frames", "20", "--fps", "50", "--model-ms", "30"])
    assert (block["frames"], block["dropped"]) == (20, 0)
    assert drop["frames"] + drop["dropped"] == 20
    assert block["latency"] is not None
    assert drop["latency"] is not None


def test_http_model_serves_requests() -> None:
    import json
    import threading
    import urllib.error
    import urllib.request

    import http_model

    p = http_model.build(0, 0.5)
    p.start()
    answers: list[tuple[int, object]] = []

    def client() -> None:
        for body in ({"features": [1, 2, 3]}, {"features": [1]}):
            req = urllib.request.Request(
                f"http://127.0.0.1:{p.port}/predict", data=json.dumps(body).encode(), method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    answers.append((r.status, json.loads(r.read())))
            except urllib.error.HTTPError as err:
                answers.append((err.code, json.loads(err.read())))

    t = threading.Thread(target=client)
    t.start()
    p.wait_for_completion()
    t.join()
    assert answers[0][0] == 200
    assert answers[1][0] == 500


def test_http_model_load_runs_both_ways() -> None:
    import http_model

    figures = http_model.main(["--clients", "4", "--requests", "3"])
    assert set(figures) == {"one by one", "batched"}
    assert all(f["requests_per_s"] > 0 for f in figures.values())


def test_ray_cluster_example(ray_engine: Any, tmp_path: Path) -> None:
    import ray_cluster

    assert ray_cluster.main(["--images", "4", "--data", str(tmp_path)]) == {"photos": 4, "images": 8}
