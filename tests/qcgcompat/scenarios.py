"""What QCG-PilotJob 0.14.2's own client sees of a service, one scenario at a time.

The same functions run against QCG-PilotJob's real service (``record.py`` wrote
``qcg-0.14.2.json`` from them) and against hpilot (``tests/integration/test_qcg_client.py``),
which compares the two.  Each scenario drives ``qcg.pilotjob.api.manager.Manager`` (and a
raw REQ socket for the answers the client hides) and returns *observations*: values that
must be equal (states, codes, names, file contents) and *shapes* (:func:`shape`: the keys
and types of an answer, not its times and pids).

Only the client library and pyzmq are imported here, so the file runs in QCG-PilotJob's
own environment as well as in hpilot's.  Job processes sleep; the scenarios themselves
never sleep to wait, they poll with a deadline.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Sequence

import zmq
from qcg.pilotjob.api.job import Jobs
from qcg.pilotjob.api.manager import Manager

Obs = Dict[str, Any]


def shape(value: Any) -> Any:
    """Keys and types, recursively: what a client may rely on (not times, pids or paths)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    return type(value).__name__


def fails(call: Callable[[], Any]) -> Dict[str, Any]:
    """What a client call raised (its class and the start of its message), or returned."""
    try:
        result = call()
    except Exception as e:  # noqa: BLE001 - the class is the observation
        return {"raises": type(e).__name__, "message": str(e)}
    return {"returns": shape(result)}


class Raw:
    """A plain REQ socket: the answers exactly as the service sends them."""

    def __init__(self, address: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def ask(self, request: Dict[str, Any], timeout: float = 30) -> Dict[str, Any]:
        self.sock.send(json.dumps(request).encode())
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no answer to {request} in {timeout}s")
        return json.loads(self.sock.recv())

    def close(self) -> None:
        self.sock.close(0)


def until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read(wd: str, name: str) -> str:
    with open(os.path.join(wd, name)) as f:
        return f.read()


def state_of(m: Manager, name: str) -> str:
    return m.status(name)["jobs"][name]["data"]["status"]


def childs(m: Manager, name: str) -> List[str]:
    return [c["state"] for c in m.info(name, withChilds=True)["jobs"][name]["data"]["childs"]]


# ---- the scenarios ----


def basics(m: Manager, raw: Raw, wd: str) -> Obs:
    """submit, list, wait4, status, info, info_parsed, resources, system_status, iterations by name."""
    o: Obs = {}
    o["system_status"] = shape(m.system_status())
    o["resources"] = m.resources()
    ids = m.submit(Jobs()
                   .add(name="b-true", exec="/bin/true", stdout="b-true.out")
                   .add(name="b-fail", script="exit 3")
                   .add(name="b-it", exec="/bin/echo", args=["${it}"], iteration=3, stdout="b-it.${it}"))
    o["submit"] = ids
    o["wait4"] = m.wait4(ids)
    listing = m.list()
    o["list"] = {n: e["status"] for n, e in listing.items() if n.startswith("b-")}
    o["list_shape"] = shape(listing["b-true"])
    o["status"] = m.status(ids)
    o["status_it"] = m.status("b-it:1")
    info = m.info(ids)["jobs"]
    o["info_shape"] = {n: shape(e) for n, e in info.items()}
    o["info_states"] = {n: e["data"]["status"] for n, e in info.items()}
    o["info_iterations"] = info["b-it"]["data"]["iterations"]
    with_childs = m.info("b-it", withChilds=True)["jobs"]["b-it"]["data"]
    o["childs_shape"] = shape(with_childs["childs"])
    o["childs"] = [(c["iteration"], c["state"], c["runtime"]["exit_code"]) for c in with_childs["childs"]]
    o["info_it"] = shape(m.info("b-it:2")["jobs"]["b-it:2"])
    o["info_it_name"] = m.info("b-it:2")["jobs"]["b-it:2"]["data"]["jobName"]
    parsed = m.info_parsed(ids, withChilds=True)
    o["info_parsed"] = {n: {"name": p.name, "status": p.status, "total_cores": p.total_cores,
                            "nodes": len(p.nodes or {}), "childs": [(c.name, c.status) for c in p.childs or []],
                            "iterations": p.iterations, "time": p.time is not None if not p.iterations else None}
                        for n, p in parsed.items()}
    o["files"] = sorted(f for f in os.listdir(wd) if f.startswith("b-"))
    o["remove"] = m.remove(ids)
    o["list_after_remove"] = sorted(n for n in m.list() if n.startswith("b-"))
    return o


def errors(m: Manager, raw: Raw, wd: str) -> Obs:
    """Where QCG-PilotJob's client raises and where it does not; the codes and message starts."""
    o: Obs = {}
    m.submit(Jobs().add(name="e-done", exec="/bin/true").add(name="e-long", exec="/bin/sleep", args=["30"]))
    m.wait4("e-done")
    until("e-long to run", lambda: state_of(m, "e-long") == "EXECUTING")
    o["status_unknown"] = fails(lambda: m.status(["e-done", "e-nope"]))
    o["info_unknown"] = fails(lambda: m.info("e-nope"))
    o["status_bad_iteration"] = fails(lambda: m.status("e-done:3"))
    o["cancel_finished"] = fails(lambda: m.cancel("e-done"))
    o["cancel_unknown"] = fails(lambda: m.cancel("e-nope"))
    o["remove_running"] = fails(lambda: m.remove("e-long"))
    o["remove_unknown"] = fails(lambda: m.remove("e-nope"))
    o["submit_duplicate"] = fails(lambda: m.submit(Jobs().add(name="e-done", exec="/bin/true")))
    for key, req in (("raw_cancel", {"request": "cancelJob", "jobNames": ["e-done", "e-nope"]}),
                     ("raw_remove", {"request": "removeJob", "jobNames": ["e-long", "e-nope"]}),
                     ("raw_status_unknown", {"request": "jobStatus", "jobNames": ["e-nope"]}),
                     ("raw_no_jobs", {"request": "submit"}),
                     ("raw_empty_jobs", {"request": "submit", "jobs": []}),
                     ("raw_unknown_request", {"request": "frobnicate"}),
                     ("raw_no_names", {"request": "jobStatus"}),
                     ("raw_cancel_no_names", {"request": "cancelJob"}),
                     ("raw_bad_control", {"request": "control", "command": "reboot"})):
        answer = raw.ask(req)
        o[key] = {"code": answer["code"], "shape": shape(answer),
                  "data_keys": sorted(answer.get("data") or {}),
                  "message_start": (answer.get("message") or "")[:40]}
    m.cancel("e-long")
    o["wait4_canceled"] = m.wait4("e-long")
    return o


def variables(m: Manager, raw: Raw, wd: str) -> Obs:
    """${it} the index, ${itval} the value, ${jname} the job's name, ${uniq} and ${rcnt} per request."""
    o: Obs = {}
    m.submit(Jobs().add(name="v-vals", iteration={"values": ["x", "y", "z"]},
                        script="echo ${it} ${itval} ${jname} > v-vals.${it}.out")
                   .add(name="v-range", iteration={"start": 2, "stop": 4},
                        script="echo ${it} ${itval} ${jname} > v-range.${it}.out")
                   .add(name="v-one", script="echo ${jname} ${rcnt} ${uniq} > v-one.out"))
    m.submit(Jobs().add(name="v-two", script="echo ${jname} ${rcnt} ${uniq} > v-two.out"))
    o["wait4"] = m.wait4(["v-vals", "v-range", "v-one", "v-two"])
    for f in sorted(os.listdir(wd)):
        if f.startswith("v-vals") or f.startswith("v-range"):
            o[f] = read(wd, f).split()
    one = read(wd, "v-one.out").split()
    two = read(wd, "v-two.out").split()
    o["jname"] = [one[0], two[0]]
    o["rcnt_step"] = int(two[1]) - int(one[1])
    o["uniq_differs"] = one[2] != two[2]
    o["uniq_len"] = len(one[2])
    return o


def iteration_dependencies(m: Manager, raw: Raw, wd: str) -> Obs:
    """"after": ["a:${it}"]: iteration i waits for a:i; a failed a:i omits only i."""
    o: Obs = {}
    m.submit(Jobs()
             .add(name="d-a", iteration=3, script="sleep 0.${it}; echo ${it} > d-a.${it}.out")
             .add(name="d-b", iteration=3, after=["d-a:${it}"], script="cat d-a.${it}.out > d-b.${it}.out")
             .add(name="d-c", iteration=3, script="test ${it} -ne 1")
             .add(name="d-d", iteration=3, after=["d-c:${it}"], script="true")
             .add(name="d-e", iteration=3, after=["d-d:${it}"], script="true"))
    o["wait4"] = m.wait4(["d-a", "d-b", "d-c", "d-d", "d-e"])
    o["d-b-files"] = sorted(read(wd, f).strip() for f in os.listdir(wd) if f.startswith("d-b."))
    for name in ("d-c", "d-d", "d-e"):
        o[f"{name}-childs"] = childs(m, name)
        o[f"{name}-iterations"] = m.info(name)["jobs"][name]["data"]["iterations"]
    return o


def cancel_iterations(m: Manager, raw: Raw, wd: str) -> Obs:
    """cancelJob of single iterations, running and queued; of a whole job; of its dependants."""
    o: Obs = {}
    m.submit(Jobs().add(name="c-it", iteration=6, exec="/bin/sleep", args=["3"]))
    until("4 iterations to run", lambda: childs(m, "c-it").count("EXECUTING") == 4)
    queued = [i for i, s in enumerate(childs(m, "c-it")) if s == "QUEUED"]
    running = [i for i, s in enumerate(childs(m, "c-it")) if s == "EXECUTING"]
    o["cancel"] = m.cancel([f"c-it:{running[0]}", f"c-it:{queued[-1]}"])
    o["wait4"] = m.wait4("c-it")
    states = childs(m, "c-it")
    o["canceled"] = [states[running[0]], states[queued[-1]]]
    o["others"] = sorted(s for i, s in enumerate(states) if i not in (running[0], queued[-1]))
    o["iterations"] = m.info("c-it")["jobs"]["c-it"]["data"]["iterations"]
    m.submit(Jobs().add(name="c-whole", iteration=3, exec="/bin/sleep", args=["30"])
                   .add(name="c-after", iteration=3, after=["c-whole:${it}"], exec="/bin/true")
                   .add(name="c-next", after=["c-whole"], exec="/bin/true"))
    until("c-whole to run", lambda: childs(m, "c-whole").count("EXECUTING") == 3)
    m.cancel("c-whole")
    o["wait4_whole"] = m.wait4(["c-whole", "c-after", "c-next"])
    o["c-whole-childs"] = childs(m, "c-whole")
    o["c-after-childs"] = childs(m, "c-after")
    return o


def events(m: Manager, raw: Raw, wd: str) -> Obs:
    """wait4_any_job_finish and wait4all, which QCG-PilotJob's client waits for on events only."""
    o: Obs = {}
    m.submit(Jobs().add(name="w-one", exec="/bin/sleep", args=["0.3"]))
    o["any"] = m.wait4_any_job_finish(timeout_secs=60)
    m.submit(Jobs().add(name="w-it", iteration=2, exec="/bin/sleep", args=["0.3"]))
    seen = [m.wait4_any_job_finish(timeout_secs=60) for _ in range(3)]
    o["any_iterations"] = sorted(seen)
    # wait4all reads the events queued since the client connected, and a "no jobs" event from
    # before the submit (there is one: w-it ended) would end it at once, in QCG-PilotJob as here;
    # a client that connects now has none
    fresh = Manager(address=m._address, cfg={"log_file": os.path.join(wd, "api-fresh.log")})
    try:
        fresh.submit(Jobs().add(name="w-all", exec="/bin/sleep", args=["0.5"]))
        fresh.wait4all(timeout_secs=60)
        o["after_wait4all"] = state_of(fresh, "w-all")
    finally:
        fresh._disconnect()
        fresh._zmq_status_socket.close(0)
        fresh.cleanup()
    o["all_finished"] = raw.ask({"request": "status", "options": {"allJobsFinished": True}})
    return o


SCENARIOS: Dict[str, Callable[[Manager, Raw, str], Obs]] = {
    "basics": basics,
    "errors": errors,
    "variables": variables,
    "iteration_dependencies": iteration_dependencies,
    "cancel_iterations": cancel_iterations,
    "events": events,
}


def run_all(address: str, wd: str, names: Sequence[str] = tuple(SCENARIOS)) -> Obs:
    """The scenarios against the service at ``address`` (working directory ``wd``), then finish."""
    m = Manager(address=address, cfg={"log_file": os.path.join(wd, "api.log")})
    raw = Raw(address)
    out: Obs = {"publisher": bool(m._publisher_address)}
    try:
        for name in names:
            out[name] = SCENARIOS[name](m, raw, wd)
        finish = raw.ask({"request": "finish"})
        out["finish"] = {"code": finish["code"], "shape": shape(finish)}
    finally:
        raw.close()
        m.cleanup()
    return json.loads(json.dumps(out))  # as the recording reads back: tuples are lists
