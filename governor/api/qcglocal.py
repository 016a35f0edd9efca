"""QCG-PilotJob's own ``LocalManager``, starting hpilot's service instead of QCG-PilotJob's.

QCG-PilotJob's ``qcg.pilotjob.api.manager.LocalManager`` starts its service in a child
process (``qcg.pilotjob.service.QCGPMServiceProcess``) and reads the service's address
from a queue.  :func:`use_hpilot` puts :class:`HpilotServiceProcess` in that place, so a
program written for QCG-PilotJob keeps its ``LocalManager(["--nodes", "4"])`` and gets an
hpilot service (the flags are the same)::

    from hpilot.governor.api.qcglocal import use_hpilot
    use_hpilot()
    from qcg.pilotjob.api.manager import LocalManager   # unchanged from here on

Nothing here imports QCG-PilotJob until :func:`use_hpilot` is called.
"""

from __future__ import annotations

import multiprocessing
import re
import signal
import subprocess
import sys
from typing import Any, List, Optional

BANNER = re.compile(r"^hpilot: service listening on (\S+?)(?:, events \S+)?; run dir ")


class HpilotServiceProcess(multiprocessing.Process):
    """Runs ``hpilot service ARGS`` and tells QCG-PilotJob's LocalManager its address, as
    QCG-PilotJob's own service process does (``{"zmq_addresses": [address]}``)."""

    def __init__(self, args: List[str], queue: Any) -> None:
        super().__init__(daemon=True)
        self.args = [str(a) for a in args]
        self.queue = queue

    def run(self) -> None:
        proc = subprocess.Popen([sys.executable, "-m", "hpilot.governor", "service", *self.args],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())  # LocalManager.finish() ends with terminate()
        address: Optional[str] = None
        assert proc.stdout is not None
        for line in proc.stdout:
            m = BANNER.match(line)
            if m:
                address = m.group(1).replace("0.0.0.0", "127.0.0.1")
                break
        if address is None:
            self.queue.put({"error": f"hpilot service exited with status {proc.wait()} before listening"})
            return
        self.queue.put({"zmq_addresses": [address]})
        for _ in proc.stdout:  # keep its stdout drained until it exits
            pass
        proc.wait()


def use_hpilot() -> None:
    """Make QCG-PilotJob's ``LocalManager`` start hpilot's service from now on."""
    import qcg.pilotjob.service as qcg_service

    qcg_service.QCGPMServiceProcess = HpilotServiceProcess
