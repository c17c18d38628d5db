"""The Ray engine beyond the operator matrix: packaging, resources, placement, clusters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import psutil
import pytest

from olympipe import Pipeline, PipelineError, RayEngine
from tests.engines import stagefns as f

pytestmark = pytest.mark.timeout(180)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        **kwargs,
    )


def test_import_olympipe_never_imports_ray() -> None:
    done = _python("import sys, olympipe; from olympipe import RayEngine; print('ray' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_ray_engine_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"olympipe\[ray\]"):
        RayEngine()


def test_bad_engine_arguments() -> None:
    with pytest.raises(ValueError):
        Pipeline(range(3), engine="cluster")
    with pytest.raises(ValueError):
        RayEngine(chunk_size=0)
    with pytest.raises(ValueError, match="no stage"):
        Pipeline(range(3)).task(f.double).wait_for_result(engine=RayEngine(stage_options={"nope": {}}))


def test_more_workers_than_cpus_runs(ray_engine: RayEngine) -> None:
    got = (
        Pipeline(range(300))
        .task(f.sleepy, count=4)
        .task(f.double, count=3)
        .wait_for_result(engine=ray_engine)
    )
    assert got == [2 * x for x in range(300)]


def test_runs_in_a_row_give_every_cpu_back(ray_engine: RayEngine) -> None:
    import ray

    for _ in range(8):
        assert Pipeline(range(20)).task(f.double, count=2).wait_for_result(engine=ray_engine)[-1] == 38
    assert _alive_actor_count(ray) == 0
    assert _cpus_back(ray)


def test_stage_options_reserve_resources(ray_engine: RayEngine) -> None:
    import ray

    engine = RayEngine(stage_options={"double": {"num_cpus": 1}})
    p = Pipeline(range(10)).task(f.double)
    assert p.wait_for_result(engine=engine) == [2 * x for x in range(10)]
    assert _cpus_back(ray)


def test_unfused_and_fixed_chunks_give_the_same_result(ray_engine: RayEngine) -> None:
    p = Pipeline(range(500)).task(f.double).filter(f.is_odd).task(f.double, count=2)
    want = p.wait_for_result(engine="inline")
    for engine in (RayEngine(fuse=False), RayEngine(chunk_size=7, max_in_flight=2)):
        assert p.wait_for_result(engine=engine) == want


def test_progress_and_stats_from_the_actors(
    ray_engine: RayEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Pipeline(range(200)).task(f.double, count=2).batch(10)
    assert len(p.wait_for_result(engine=ray_engine, progress=True)) == 20
    rows = {r.name: r for r in p.stats().rows}
    assert rows["double"].workers == 2
    assert rows["double"].items_in == 200
    assert rows["batch"].items_out == 20
    assert "200/200" in capsys.readouterr().err


def test_ctrl_c_kills_every_actor(ray_engine: RayEngine) -> None:
    import ray

    address = ray.get_runtime_context().gcs_address
    script = f"""
        import sys, time
        import ray
        ray.init(address={address!r}, log_to_driver=False)
        from olympipe import Pipeline, RayEngine
        from tests.engines import stagefns as f

        def slow(x):
            time.sleep(0.05)
            return x

        print("started", flush=True)
        try:
            Pipeline(f.naturals()).task(slow, count=3).wait_for_result(engine=RayEngine())
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """
    env = {**os.environ, "PYTHONPATH": ROOT, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    for _ in range(50):  # wait until the actors exist: three of them, alive
        if _alive_actor_count(ray, wait=0) >= 3:
            break
        import time

        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "interrupted" in out
    assert _alive_actor_count(ray) == 0


def _cpus_back(ray: Any) -> bool:
    """Whether Ray's resource view shows both CPUs free. The view is refreshed
    periodically (no event to await), so it is read until it converges, for up to 5 s."""
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU") == 2.0:
            return True
        time.sleep(0.1)
    return False


def _alive_actor_count(ray: Any, wait: float = 10.0) -> int:
    """Live olympipe actor processes on this machine after giving them ``wait`` seconds to
    exit (Ray confirms a death before the process is gone; its state API needs a dashboard)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::StageActor") and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    _gone, alive = psutil.wait_procs(found, timeout=wait)
    return len([p for p in alive if p.status() != psutil.STATUS_ZOMBIE])


CLUSTER_SCRIPT = """
    import ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    from olympipe import Pipeline, RayEngine

    def where(x):
        import ray
        return (x, ray.get_runtime_context().get_node_id())

    got = Pipeline(range(400)).task(where, count=2).wait_for_result(engine=RayEngine(chunk_size=5))
    assert [x for x, _node in got] == list(range(400)), "order"
    print(len({node for _x, node in got}))
    ray.shutdown()
    cluster.shutdown()
"""


def test_two_node_cluster_spreads_a_stage_and_keeps_order() -> None:
    done = _python(CLUSTER_SCRIPT, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "2"


def test_a_ray_started_for_the_run_is_shut_down() -> None:
    code = """
        import ray
        from olympipe import Pipeline
        assert not ray.is_initialized()
        print(Pipeline(range(5)).task(lambda x: x * 3).wait_for_result(engine="ray"))
        print(ray.is_initialized())
    """
    done = _python(code, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-2:] == ["[0, 3, 6, 9, 12]", "False"]


def test_a_ray_the_user_started_keeps_running(ray_engine: RayEngine) -> None:
    import ray

    assert Pipeline(range(3)).task(f.double).wait_for_result(engine="ray") == [0, 2, 4]
    assert ray.is_initialized()


def fails_at_50(x: int) -> int:
    if x == 50:
        raise ValueError("fifty")
    return x


def test_a_failed_run_leaves_no_unhandled_error_logs(
    ray_engine: RayEngine, caplog: pytest.LogCaptureFixture
) -> None:
    import gc
    import logging

    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            with pytest.raises(PipelineError):
                Pipeline(range(2000)).task(fails_at_50).task(f.double).wait_for_result(engine=ray_engine)
        gc.collect()
    assert not [r for r in caplog.records if "Unhandled error" in r.getMessage()]


def test_zero_copy_gives_stages_the_object_stores_arrays_as_they_are(ray_engine: Any) -> None:
    np = pytest.importorskip("numpy")
    arrays = [np.zeros(1 << 16) for _ in range(3)]
    engine = RayEngine(zero_copy=True)
    assert Pipeline(arrays).task(f.is_writable).wait_for_result(engine=engine) == [False] * 3
    assert Pipeline(arrays).task(f.is_writable).wait_for_result(engine=ray_engine) == [True] * 3


def test_a_ray_without_its_private_upload_calls_is_a_clear_error(ray_engine: RayEngine) -> None:
    import types

    from olympipe._engines.ray.cluster import uploaded

    assert uploaded(types.SimpleNamespace(), {"env_vars": {"A": "1"}}) == {"env_vars": {"A": "1"}}
    moved = types.SimpleNamespace(__version__="99.0")  # a Ray whose internals moved
    with pytest.raises(RuntimeError, match=r"give the runtime_env to ray.init\(\)"):
        uploaded(moved, {"py_modules": ["."]})
