"""`meshctl logs` and `meshctl exec`: through the API server to the node agent.

    meshctl logs POD [-c CONTAINER] [-f] [--previous] [--tail N]
    meshctl exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARGS...]

`logs` reads `pods/<name>/log` (streamed with -f until the container stops or Ctrl-C).
`exec` without -i/-t posts to `pods/<name>/exec` and gets `{stdout, stderr, exitCode}` back;
with -i (stdin) and/or -t (a terminal) it streams over the remotecommand WebSocket as kubectl
does (attach.py). Either way it exits with the command's status, printing kubectl's
"command terminated with exit code N".
A pod with several containers and no -c uses the first, saying so on stderr, as kubectl does.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys

from meshnet.api.resources import lookup
from meshnet.client.errors import ApiError
from meshnet.client.rest import _transport_error, resource_path

from .context import Session
from .errors import CLIError

PODS = lookup("pods")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"

LOGS_EXAMPLES = """Examples:
  # Return snapshot logs from pod nginx with only one container
  meshctl logs nginx

  # Begin streaming the logs of the ruby container in pod web-1
  meshctl logs -f -c ruby web-1

  # Logs of the previous instance of a restarted container
  meshctl logs --previous web-1"""

EXEC_EXAMPLES = """Examples:
  # Get output from running the 'date' command in pod mypod, using the first container
  meshctl exec mypod -- date

  # Run 'ls -l /etc' in the ruby container of pod mypod
  meshctl exec mypod -c ruby -- ls -l /etc"""


def configure_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod", help="POD or pod/POD")
    p.add_argument("-c", "--container", default="", help="Print the logs of this container")
    p.add_argument("-f", "--follow", action="store_true",
                   help="Specify if the logs should be streamed.")
    p.add_argument("-p", "--previous", action="store_true",
                   help="Print the logs for the previous instance of the container in a pod "
                        "if it exists.")
    p.add_argument("--tail", type=int, default=-1,
                   help="Lines of recent log file to display. Defaults to -1 (all).")


def configure_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod", help="POD or pod/POD")
    p.add_argument("command", nargs="*", help="COMMAND [args...] after --")
    p.add_argument("-c", "--container", default="",
                   help="Container name. If omitted, the first container in the pod is chosen")
    p.add_argument("-i", "--stdin", action="store_true", help="Pass stdin to the container")
    p.add_argument("-t", "--tty", action="store_true", help="Stdin is a TTY")


def _pod_name(text: str) -> str:
    kind, sep, name = text.partition("/")
    if not sep:
        return text
    if kind not in ("pod", "pods", "po"):
        raise CLIError(f"meshctl logs/exec takes a pod (POD or pod/POD), not {text!r}")
    return name


def _container(s: Session, pod: str, wanted: str) -> str:
    if wanted:
        return wanted
    obj = s.client.get(PODS, pod, s.namespace)
    names = [c["name"] for c in (obj.get("spec") or {}).get("containers") or []]
    default = ((obj.get("metadata") or {}).get("annotations") or {}).get(
        DEFAULT_CONTAINER_ANNOTATION)
    chosen = default if default in names else (names[0] if names else "")
    if len(names) > 1:
        s.err(f'Defaulted container "{chosen}" out of: {", ".join(names)}')
    return chosen


def run_logs(args, s: Session) -> int:
    pod = _pod_name(args.pod)
    container = _container(s, pod, args.container)
    params = {"container": container, "follow": "true" if args.follow else None,
              "previous": "true" if args.previous else None,
              "tailLines": str(args.tail) if args.tail >= 0 else None}
    path = resource_path(PODS, s.namespace, pod, "log")
    if not args.follow:
        s.out(s.client.request("GET", path, params=params, accept="text/plain").body
              .decode("utf-8", "replace"))
        return 0
    client = s.client
    conn = client._new_connection(None)  # no read timeout: a followed log can be quiet
    try:
        conn.request("GET", client.url(path, params),
                     headers=client._headers("text/plain", None, None))
        resp = conn.getresponse()
        if resp.status >= 400:
            raise ApiError.from_response(resp.status, resp.read(),
                                         resp.getheader("content-type", ""))
        while chunk := resp.read1(65536):
            s.out(chunk.decode("utf-8", "replace"))
            s.flush()
    except (OSError, http.client.HTTPException) as e:
        raise _transport_error(e, client.conn.server) from None
    except KeyboardInterrupt:
        return 0
    finally:
        conn.close()
    return 0


def run_exec(args, s: Session) -> int:
    command = [c for c in args.command]
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CLIError("you must specify at least one command for the container\n"
                       "See 'meshctl exec --help' for usage.")
    pod = _pod_name(args.pod)
    container = _container(s, pod, args.container)
    params = [("container", container)] + [("command", c) for c in command]
    if args.stdin or args.tty:
        return _exec_streamed(args, s, pod, params)
    resp = s.client.request("POST", resource_path(PODS, s.namespace, pod, "exec"),
                            params=params)
    result = json.loads(resp.body)
    s.out(result.get("stdout", ""))
    if result.get("stderr"):
        s.io.stderr.write(result["stderr"])
    code = int(result.get("exitCode", 0))
    if code:
        s.err(f"command terminated with exit code {code}")
    return code


def _exec_streamed(args, s: Session, pod: str, params: list) -> int:
    """-i/-t: the remotecommand WebSocket (attach.py), as kubectl exec does."""
    from . import attach  # aiohttp: only for streamed exec

    tty = args.tty
    if tty and not (args.stdin and os.isatty(sys.stdin.fileno())):
        s.err("Unable to use a TTY - input is not a terminal or the right kind of file")
        tty = False
    params = params + [("stdin", "true" if args.stdin else "false"), ("stdout", "true"),
                       ("stderr", "false" if tty else "true"), ("tty", "true" if tty else "false")]
    s.flush()
    return attach.run(s.client, resource_path(PODS, s.namespace, pod, "exec"), params,
                      stdin=args.stdin, tty=tty, err=s.err)
