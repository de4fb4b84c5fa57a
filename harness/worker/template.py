"""``python -m harness.worker.template KEY``: a warm template that imports the training stack once and forks
one child per cell (``run.worker=warm``).

Started detached by the first parent that needs it (``harness.sweep.warm``), with the environment its key
names (``harness.store.warm``). It imports ``PRELOAD`` -- and nothing that starts a thread, initialises CUDA
or opens the hub: it checks that after importing and refuses to serve otherwise -- then listens on its
socket. For each request it compares the parent's fingerprint with its own (a mismatch: it answers
``stale``, stops listening and exits once its children are gone), then forks. The child starts a new
session (its own process group), takes the cell's log as stdout/stderr, keeps the lock descriptors it was
handed, sets the request's environment and working directory, and runs ``harness.worker.__main__.main``
exactly as a spawned worker would; the template answers the child's pid, and later its exit status
(``os.waitstatus_to_exitcode``: negative for a signal, as ``subprocess``). A parent whose connection drops
(killed) takes its child with it: SIGTERM to the child's group, SIGKILL after a grace period. A child dies
with its template (PR_SET_PDEATHSIG), which its parent then records. No running cell, for ``IDLE_S``: exit.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time
from typing import Any, Dict, List, Optional

from harness.files import write_json_atomic
from harness.store.warm import IDLE_ENV, IDLE_S, Channel, difference, fingerprint, refusal_path, send, socket_path
from harness.worker.forksafe import populate, preload, quiet, reseed, resident_file_pages, restore_threads

KILL_GRACE_S = 10.0


class Template:
    """The listening socket, the children and their parents' connections."""

    def __init__(self, key: str, idle_s: float) -> None:
        self.key = key
        self.idle_s = idle_s
        self.path = socket_path(key)
        self.own = fingerprint()
        self.resident = resident_file_pages()
        self.children: Dict[int, socket.socket] = {}
        self.doomed: Dict[int, float] = {}
        """pid -> when SIGKILL follows the SIGTERM its parent's departure sent."""
        self.last = time.monotonic()
        self.selector = selectors.DefaultSelector()
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        self.listener: Optional[socket.socket] = self._listen()

    def _listen(self) -> socket.socket:
        """Bind a fresh name, then rename it over the socket path: a parent never connects before we listen."""
        temp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp")
        temp.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(temp))
        os.chmod(temp, 0o600)
        listener.listen(64)
        os.replace(temp, self.path)
        self.inode = os.stat(self.path).st_ino
        self.selector.register(listener, selectors.EVENT_READ, "listen")
        return listener

    def stop_listening(self) -> None:
        """Unlink our socket (not a successor's) and take no new cells."""
        if self.listener is None:
            return
        try:
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()
        except OSError:
            pass
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None

    def serve(self) -> None:
        """Run until idle (or stale) with no child left."""
        while True:
            busy = bool(self.children)
            if not busy and (self.listener is None or time.monotonic() - self.last > self.idle_s):
                self.stop_listening()
                return
            for token, _ in self.selector.select(timeout=1.0):
                if token.data == "wake":
                    self._drain_wake()
                elif token.data == "listen":
                    self._accept()
                else:
                    self._parent_gone(token.data)
            self._reap()
            self._kill_overdue()

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _accept(self) -> None:
        assert self.listener is not None
        conn, _ = self.listener.accept()
        self.last = time.monotonic()
        conn.settimeout(10.0)
        try:
            channel = Channel(conn)
            request, _ = channel.receive(timeout=10.0, max_fds=16)
            self._handle(conn, request, channel.fds)
        except (OSError, ValueError) as exc:
            print(f"template: request failed: {exc}", file=sys.stderr, flush=True)
            conn.close()

    def _handle(self, conn: socket.socket, request: Optional[Dict[str, Any]], fds: List[int]) -> None:
        try:
            if request is None:
                conn.close()
            elif request.get("op") == "status":
                send(conn, {**quiet(), "key": self.key, "fingerprint": self.own, "children": sorted(self.children)})
                conn.close()
            elif request.get("op") == "fork":
                stale = difference(self.own, request.get("fingerprint") or {})
                if stale is not None or self.listener is None:
                    self.stop_listening()  # before answering: the parent's successor may bind the path at once
                    send(conn, {"stale": stale or "this template is shutting down"})
                    conn.close()
                    return
                pid = self._fork(conn, request, fds)
                send(conn, {"pid": pid})
                conn.setblocking(False)
                self.children[pid] = conn
                self.selector.register(conn, selectors.EVENT_READ, pid)
            else:
                send(conn, {"error": f"unknown op {request.get('op')!r}"})
                conn.close()
        finally:
            for fd in fds:
                os.close(fd)

    def _fork(self, conn: socket.socket, request: Dict[str, Any], fds: List[int]) -> int:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            _child(self, conn, request, fds, ready_w)  # never returns
        os.close(ready_w)
        os.read(ready_r, 1)  # the child has its own session: the parent may kill its group from now on
        os.close(ready_r)
        return pid

    def _parent_gone(self, pid: int) -> None:
        """A parent's connection became readable: it sent nothing more by design, so it is gone."""
        conn = self.children.get(pid)
        try:
            if conn is not None and conn.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        if pid in self.children and pid not in self.doomed:
            _signal_group(pid, signal.SIGTERM)
            self.doomed[pid] = time.monotonic() + KILL_GRACE_S
            self.selector.unregister(conn)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for pid, deadline in list(self.doomed.items()):
            if now >= deadline and pid in self.children:
                _signal_group(pid, signal.SIGKILL)
                self.doomed[pid] = float("inf")

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            self.doomed.pop(pid, None)
            self.last = time.monotonic()
            if conn is None:
                continue
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
                pass
            try:
                conn.setblocking(True)
                send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            except OSError:
                pass
            conn.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _child(template: Template, conn: socket.socket, request: Dict[str, Any], fds: List[int], ready_w: int) -> None:
    """The forked cell: its own session, the cell's log and locks, the request's environment, then the worker."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        template.selector.close()
        if template.listener is not None:
            template.listener.close()
        for other in template.children.values():
            other.close()
        conn.close()
        os.close(template.wake_r)
        log = fds[0]
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)  # the rest (the cell's lock, a GPU lease) stay open: holding them is the point
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.write(ready_w, b"1")
        os.close(ready_w)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["-m harness.worker", request["cell_dir"]]
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True, write_through=True)
        reseed()
        restore_threads()
        populate(template.resident)
        from harness.worker.__main__ import main

        code = main(sys.argv)
    except BaseException:  # noqa: BLE001 - whatever happens, the child never returns into the template's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: List[str]) -> int:
    """Entry point: preload, prove quiet, serve until idle."""
    key = argv[1]
    from harness.backends.optional import mark_absent

    mark_absent()  # as in a spawned non-quantized cell; cells that use bitsandbytes are never forked from here
    tried = preload()
    state = quiet()
    if state["threads"] != 1 or state["cuda_initialized"] or tried:
        reason = (f"refusing to fork: {state['threads']} thread(s) after importing the training stack, CUDA initialised: "
                  f"{state['cuda_initialized']}, network tried by an import: {', '.join(sorted(set(tried))) or 'none'}")
        if tried:
            reason += " (HF_HUB_OFFLINE=1 keeps imports off the network when the cells need no hub)"
        print(f"template: {reason}", file=sys.stderr, flush=True)
        write_json_atomic(refusal_path(key), {"reason": reason, "fingerprint": fingerprint()}, durable=False)
        return 3
    idle = float(os.environ.get(IDLE_ENV) or IDLE_S)
    template = Template(key, idle)
    print(f"template {key}: pid {os.getpid()} ready, {state['modules']} modules", flush=True)
    template.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
