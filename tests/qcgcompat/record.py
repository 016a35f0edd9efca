"""Record QCG-PilotJob's own answers to the scenarios (``qcg-0.14.2.json`` beside this file).

How the fixture was made (once; run it again only to check it):

    python -m venv /tmp/venv-qcgref && /tmp/venv-qcgref/bin/pip install qcg-pilotjob==0.14.2
    unshare -n sh -c 'ip link set lo up && /tmp/venv-qcgref/bin/python tests/qcgcompat/record.py \\
        tests/qcgcompat/qcg-0.14.2.json'

QCG-PilotJob's service binds ``tcp://*``, so it runs in a network namespace of its own
(``unshare -n``, with only loopback up): nothing outside can reach it.  This script
starts ``qcg-pm-service --net --nodes 4`` in a temporary directory, runs every scenario of
:mod:`scenarios` with QCG-PilotJob's client, and writes the observations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios  # noqa: E402

PORT = 5701


def main(out_path: str) -> None:
    wd = tempfile.mkdtemp(prefix="qcg-record-")
    log = open(os.path.join(wd, "service.out"), "w")  # noqa: SIM115 - the service writes it until the end
    proc = subprocess.Popen([sys.executable, "-m", "qcg.pilotjob.service", "--net", "--net-port", str(PORT),
                             "--nodes", "4", "--wd", wd], cwd=wd, stdout=log, stderr=subprocess.STDOUT)
    try:
        address = f"tcp://127.0.0.1:{PORT}"
        raw = scenarios.Raw(address)
        deadline = time.monotonic() + 60
        while True:  # the service is up once it answers
            try:
                raw.ask({"request": "resourcesInfo"}, timeout=2)
                break
            except TimeoutError:
                raw.close()
                raw = scenarios.Raw(address)
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("QCG-PilotJob's service did not start; see " + log.name) from None
        raw.close()
        observed = scenarios.run_all(address, wd)
        observed["recorded_with"] = {"qcg-pilotjob": "0.14.2", "python": sys.version.split()[0],
                                     "how": "tests/qcgcompat/record.py in unshare -n"}
        with open(out_path, "w") as f:
            json.dump(observed, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote {out_path}")
    finally:  # the scenarios end with a finish request; a service still there is stopped
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
