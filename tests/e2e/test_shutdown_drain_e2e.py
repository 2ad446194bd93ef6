"""SIGTERM under load (issue 16): the service says NOT_SERVING at once but keeps taking calls for
MLGRID_SHUTDOWN_DRAIN_SECONDS, so that calls routed to it while the endpoints drop it do not fail."""
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
from conftest import free_port, wait_for_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc

DRAIN_SECONDS = 2.0


def test_calls_made_during_the_drain_all_succeed(tmp_path):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")},
           "MLGRID_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/t.db", "MLGRID_GRPC_PORT": str(port), "MLGRID_METRICS_PORT": "0",
           "MLGRID_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS), "MLGRID_HOST": "127.0.0.1"}
    with open(tmp_path / "tracking.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "services.tracking"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, tmp_path / "tracking.log")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        experiment = stub.CreateExperiment(pb.CreateExperimentRequest(name="drain")).experiment_id
        run_id = stub.CreateRun(pb.CreateRunRequest(experiment_id=experiment)).run.info.run_id
        outcomes, stop = [], threading.Event()

        def load():
            step = 0
            while not stop.is_set():
                started = time.monotonic()
                try:
                    stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="x", value=step, step=step), timeout=5)
                    outcomes.append((started, True))
                except grpc.RpcError:
                    outcomes.append((started, False))
                step += 1

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING  # told at once
        proc.wait(timeout=30)
        stop.set()
        worker.join()
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    during = [ok for started, ok in outcomes if signalled <= started < signalled + DRAIN_SECONDS - 0.2]
    assert len(during) > 20 and all(during), f"{during.count(False)} of {len(during)} calls failed during the drain"
    assert proc.returncode == 0
