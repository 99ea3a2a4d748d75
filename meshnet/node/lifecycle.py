"""The pod lifecycle as a pure state machine: container states in, pod status out.

Theory of operation
-------------------
Each container is a frozen `CState`; the pod worker replaces it through the transition
functions below (`created`, `started`, `exited`, `waiting`, `probed`) and never edits fields
by hand, so every state change is one of the named Kubernetes transitions:

    waiting(ContainerCreating | ErrImagePull | ImagePullBackOff | CreateContainerConfigError)
        -> running -> terminated(Completed | Error | OOMKilled)
        -> waiting(CrashLoopBackOff, lastState=terminated)  when restartPolicy says restart
        -> running (restartCount + 1) ...

`pod_status()` folds the container states into the Pod's `status` exactly as kubelet's
`getPhase`/`generateAPIPodStatus` do: phase, conditions (PodScheduled, Initialized,
ContainersReady, Ready — transition times kept when a condition does not change),
containerStatuses, podIP(s), hostIP, startTime. Nothing here does I/O or reads a clock; times
are passed in as RFC 3339 strings.

`status_differs()` is kubelet's status manager `needsReconcile`: whether the API's copy of a
pod status lost something the agent wrote (the node lifecycle controller's Ready=False while
the node looked dead, a restore from an older backup), so the agent writes its own again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

RUNNING, WAITING, TERMINATED = "running", "waiting", "terminated"
CONTAINER_CREATING = "ContainerCreating"
CRASH_LOOP = "CrashLoopBackOff"


@dataclass(frozen=True)
class CState:
    name: str
    image: str = ""
    state: str = WAITING
    reason: str = CONTAINER_CREATING
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    signal: int | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False  # has it ever run (kubelet: a container ID exists)
    container_id: str = ""
    last_terminated: tuple = ()  # ((key, value), ...) of the previous run, for lastState

    def __repr__(self) -> str:
        return (f"<CState {self.name} {self.state}"
                f"{'(' + self.reason + ')' if self.reason else ''} restarts={self.restart_count}"
                f"{' ready' if self.ready else ''}>")


def waiting(cs: CState, reason: str, message: str = "") -> CState:
    return dataclasses.replace(cs, state=WAITING, reason=reason, message=message, ready=False)


def started(cs: CState, now: str, container_id: str) -> CState:
    """A (re)start: a container that has run before counts one more restart."""
    restarts = cs.restart_count + (1 if cs.started else 0)
    return dataclasses.replace(cs, state=RUNNING, reason="", message="", started_at=now,
                               finished_at="", exit_code=None, signal=None,
                               restart_count=restarts, ready=False, started=True,
                               container_id=container_id)


def exited(cs: CState, exit_code: int, now: str, signal: int | None = None,
           reason: str = "") -> CState:
    reason = reason or ("Completed" if exit_code == 0 else "Error")
    return dataclasses.replace(cs, state=TERMINATED, reason=reason, message="",
                               finished_at=now, exit_code=exit_code, signal=signal, ready=False)


def crash_loop(cs: CState, delay_s: float) -> CState:
    """Terminated, and a restart is due after `delay_s`: waiting(CrashLoopBackOff)."""
    last = (("exitCode", cs.exit_code), ("reason", cs.reason), ("startedAt", cs.started_at),
            ("finishedAt", cs.finished_at), ("containerID", cs.container_id))
    return dataclasses.replace(
        cs, state=WAITING, reason=CRASH_LOOP, ready=False, last_terminated=last,
        message=f"back-off {delay_s:g}s restarting failed container={cs.name}")


def before_restart(cs: CState) -> CState:
    """Keep the run that just ended as lastState even when no back-off was needed."""
    if cs.state != TERMINATED:
        return cs
    last = (("exitCode", cs.exit_code), ("reason", cs.reason), ("startedAt", cs.started_at),
            ("finishedAt", cs.finished_at), ("containerID", cs.container_id))
    return dataclasses.replace(cs, last_terminated=last)


def probed(cs: CState, ready: bool) -> CState:
    return dataclasses.replace(cs, ready=ready and cs.state == RUNNING)


def should_restart(policy: str, exit_code: int) -> bool:
    if policy == "Never":
        return False
    if policy == "OnFailure":
        return exit_code != 0
    return True  # Always (the default)


def pod_phase(policy: str, states: list[CState]) -> str:
    """kubelet's getPhase for pods without init containers."""
    running = waiting_n = stopped = succeeded = 0
    for cs in states:
        if cs.state == RUNNING:
            running += 1
        elif cs.state == TERMINATED:
            stopped += 1
            succeeded += cs.exit_code == 0
        elif cs.last_terminated:
            stopped += 1  # waiting to restart after a run: counts as stopped, like kubelet
        else:
            waiting_n += 1
    if waiting_n:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"  # OnFailure: the failed ones will restart
    return "Pending"


def _condition(kind: str, ok: bool, now: str, previous: dict, reason: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(kind) or {}
    cond = {"type": kind, "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status
            else now}
    if not ok and reason:
        cond["reason"] = reason
    return cond


def pod_conditions(states: list[CState], phase: str, now: str,
                   previous: list[dict] | None = None) -> list[dict]:
    prev = {c.get("type"): c for c in previous or []}
    not_ready = [cs.name for cs in states if not cs.ready]
    # A pod that completed is not Ready, with kubelet's PodCompleted reason.
    done = phase in ("Succeeded", "Failed")
    ready = not not_ready and not done
    reason = "PodCompleted" if done else "ContainersNotReady"
    return [
        _condition("Initialized", True, now, prev),
        _condition("Ready", ready, now, prev, reason),
        _condition("ContainersReady", ready, now, prev, reason),
        _condition("PodScheduled", True, now, prev),
    ]


def container_status(cs: CState) -> dict:
    if cs.state == RUNNING:
        state = {"running": {"startedAt": cs.started_at}}
    elif cs.state == TERMINATED:
        state = {"terminated": _terminated(cs.exit_code, cs.reason, cs.started_at,
                                           cs.finished_at, cs.container_id, cs.signal)}
    else:
        state = {"waiting": {"reason": cs.reason, **({"message": cs.message}
                                                      if cs.message else {})}}
    last = {}
    if cs.last_terminated:
        t = dict(cs.last_terminated)
        last = {"terminated": _terminated(t["exitCode"], t["reason"], t["startedAt"],
                                          t["finishedAt"], t["containerID"], None)}
    out = {"name": cs.name, "image": cs.image, "imageID": "",
           "state": state, "lastState": last, "ready": cs.ready,
           "restartCount": cs.restart_count, "started": cs.state == RUNNING}
    if cs.container_id:
        out["containerID"] = cs.container_id
    return out


def _terminated(code, reason, started_at, finished_at, container_id, signal) -> dict:
    out = {"exitCode": code, "reason": reason, "startedAt": started_at or None,
           "finishedAt": finished_at or None}
    if container_id:
        out["containerID"] = container_id
    if signal:
        out["signal"] = signal
    return out


def pod_status(policy: str, states: list[CState], *, now: str, pod_ip: str, host_ip: str,
               start_time: str, previous: dict | None = None, message: str = "") -> dict:
    previous = previous or {}
    phase = pod_phase(policy, states)
    status = {
        "phase": phase,
        "conditions": pod_conditions(states, phase, now, previous.get("conditions")),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "podIP": pod_ip or None,
        "podIPs": [{"ip": pod_ip}] if pod_ip else [],
        "startTime": start_time,
        "containerStatuses": [container_status(cs) for cs in states],
        "qosClass": "BestEffort",
    }
    if message:
        status["message"] = message
    return status


def _present(value):
    """value without what a merge patch or a JSON round trip drops: nulls (merge-patch deletes
    the key), empty strings, lists and objects (the same as absent to every reader)."""
    if isinstance(value, dict):
        out = {k: _present(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


def status_differs(api: dict | None, ours: dict) -> bool:
    """Whether `api` (the pod's status as the API server has it) differs from the status the
    agent computed, in a field the agent owns. Conditions compare by type, and only the types
    the agent sets: other writers may add theirs (DisruptionTarget, readiness gates)."""
    api = _present(api or {})
    ours = _present(ours)
    for key, value in ours.items():
        if key != "conditions":
            if api.get(key) != value:
                return True
            continue
        theirs = {c.get("type"): c for c in api.get("conditions") or ()}
        if any(theirs.get(c.get("type")) != c for c in value):
            return True
    return False
