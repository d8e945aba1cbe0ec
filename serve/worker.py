"""The gunicorn worker class: gthread, with a heartbeat that stops when the worker is wedged,
and connections taken by the worker best placed to serve them.

- Heartbeat: gunicorn's gthread worker notifies its master from its accept loop, which
  keeps running when every request thread (or the model thread) is stuck. This one checks
  gen3d.serve.liveness first and stays silent once the worker is wedged, so the master's
  own timeout (MODEL_SERVER_TIMEOUT) kills and replaces it, as it would a blocked sync
  worker.
- Ready first: all workers share the listening sockets. A worker that is still loading (a
  replacement, or a slower one at boot), or failed, stops accepting while another worker
  is ready, so requests go to a ready one instead of being answered 503 not_ready. When
  none is ready, every worker accepts, so /ping still answers (503) at once. A worker
  whose model becomes ready (or fails) publishes it at once and wakes every worker
  (`liveness.on_readiness`), so none waits for its loop's next turn to see it.
- Least loaded first: gthread workers accept greedily, so one worker could queue requests
  while another idles (measured: 8 % less throughput and a longer tail than sync workers
  at 4 clients on 2 workers). Behind the front, /invocations has a socket of its own
  (GEN3D_CONTROL_SOCKET names the other, for /ping and the rest); a worker takes from it
  only while it has no more requests waiting on its model than any other ready worker
  and fewer than `gen3d_lookahead` (two of its batches: one computing, one gathering),
  so requests wait in the shared backlog for whichever worker frees first, as with sync
  workers (`takes_invocation`). A request whose answer is computed (being sent, or its
  connection not yet closed) no longer counts: counted, it sent 1 request in 4 to the
  busier worker.
  The control socket is taken by every ready worker, so /ping never waits behind that.
- One batch first, on shared cores: workers of a batching backend on the CPU (`gen3d_pack`
  = its share of GEN3D_MAX_BATCH_SIZE, `hardware.worker_batch_size`) fill the lowest
  ready slot's batch before the next worker takes any, since one batch of 4 on both
  cores beat two workers' batches of 1-2 (proxy tiny: 29-32 against 33-38 req/s at 4
  clients). A worker that fills up wakes the others through
  their pipes on the board. Workers with a GPU each take their share, least loaded first.

Readiness and load are shared through `WorkerBoard`, an int per worker slot in memory the
master made before forking (gen3d.serve.gunicorn_conf).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import selectors
import threading
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from gen3d.serve import hardware, liveness
from gen3d.serve.front import CONTROL_SOCKET_ENV

log = logging.getLogger("gen3d.worker")
NOT_READY = -1
LOOKAHEAD_BATCHES = 2  # behind the front: a batch computing and the next one gathering
_handling = threading.local()  # the connection a request thread is serving


class WorkerBoard:
    """Per worker slot: connections in flight (or NOT_READY), and whether its model is
    computing a batch. Written by each worker for its own slot; cleared by the master when
    a worker exits."""

    def __init__(self, slots: int) -> None:
        self._load = multiprocessing.RawArray("i", [NOT_READY] * max(1, slots))
        self._computing = multiprocessing.RawArray("b", max(1, slots))
        # one pipe per slot: a byte in it wakes that worker to look at the board again
        self._wake = [os.pipe() for _ in range(max(1, slots))]
        for read_end, write_end in self._wake:
            os.set_blocking(read_end, False)
            os.set_blocking(write_end, False)

    def wake_fd(self, slot: int) -> int:
        """The descriptor that becomes readable when `slot` should look again."""
        return self._wake[slot][0]

    def wake_all(self) -> None:
        self.wake_others(-1)

    def wake_others(self, slot: int) -> None:
        for i, (_read_end, write_end) in enumerate(self._wake):
            if i != slot:
                try:
                    os.write(write_end, b"!")
                except BlockingIOError:  # already has bytes waiting: it will wake anyway
                    pass

    def mark(self, slot: int, ready: bool, load: int = 0) -> None:
        if 0 <= slot < len(self._load):
            self._load[slot] = load if ready else NOT_READY
            if not ready:
                self._computing[slot] = 0

    def mark_computing(self, slot: int, computing: bool) -> None:
        if 0 <= slot < len(self._computing):
            self._computing[slot] = 1 if computing else 0

    def others_busy(self, slot: int) -> int:
        """Other workers computing a batch or with requests waiting for one: both will
        use their cores before this worker's next batch is done."""
        return sum(
            1
            for i, (computing, load) in enumerate(zip(self._computing, self._load, strict=True))
            if i != slot and (computing or load > 0)
        )

    def others(self, slot: int) -> list[int]:
        """The loads of the other ready workers."""
        return [v for i, v in enumerate(self._load) if i != slot and v != NOT_READY]

    def lower_with_room(self, slot: int, capacity: int) -> bool:
        """Whether a ready worker in a lower slot has fewer than `capacity` requests."""
        return any(NOT_READY != v < capacity for v in self._load[:slot])


def takes_invocation(
    load: int, others: list[int], pack: int = 0, lookahead: int = 0, lower_has_room: bool = False
) -> bool:
    """Whether a ready worker with `load` requests on its model takes the next
    /invocations connection, the other ready workers having `others`.

    - Never past `lookahead` (a batch computing and the next one gathering): the rest
      wait in the socket's shared backlog, in arrival order, for whichever worker frees
      first. Queued in one worker, a request waited behind that worker's queue however
      fast the other drained its own (silhouette, 2 workers, 16 clients: p99 1.14x the
      sync peer's, whose requests all wait in one backlog; 1.03x with the lookahead).
    - `pack` > 1 (workers sharing the CPU's cores): fill the lowest worker's batch first.
    - Else the least loaded takes it.
    """
    if lookahead and load >= lookahead:
        return False
    if not others:
        return True
    if pack > 1 and (load < pack or min(others) < pack):
        # workers share the cores: one batch of n costs less than n batches of one
        return load < pack and not lower_has_room
    return load <= min(others)


class ModelLoad:
    """Which of a worker's connections are past the model: their answer is computed and
    only sending and closing are left (the main loop closes a connection only when the
    GIL lets it, several ms later on a busy CPU worker). Those are not counted as load."""

    def __init__(self) -> None:
        self._past: set[Any] = set()
        self._lock = threading.Lock()

    def past_model(self, conn: Any) -> bool:
        """Mark `conn`; False if it already was."""
        with self._lock:
            if conn in self._past:
                return False
            self._past.add(conn)
            return True

    def ended(self, conn: Any) -> None:
        """`conn`'s request is over (closed, or kept alive for its next request)."""
        with self._lock:
            self._past.discard(conn)

    def of(self, connections: int) -> int:
        """The load among `connections` open ones: those still needing the model."""
        return max(0, connections - len(self._past))


class Gen3DWorker(ThreadWorker):
    _reported = False
    gen3d_slot = 0
    gen3d_board: WorkerBoard | None = None
    # > 1: fill one worker's batch before the next worker takes any (see `_eligible`)
    gen3d_pack = 0
    # > 0, behind the front: the most requests needing its model that a worker holds
    gen3d_lookahead = 0

    def init_process(self) -> None:
        self._registered: set[int] = set()
        self._control_path = os.environ.get(CONTROL_SOCKET_ENV)
        board, slot = self.gen3d_board, self.gen3d_slot
        self._model_load = ModelLoad()
        if board is not None:  # how many other workers compute now (torch threads on CPU)
            liveness.on_activity(lambda computing: board.mark_computing(slot, computing))
            hardware.install_busy_peers(lambda: board.others_busy(slot))
        liveness.on_past_model(self._request_past_model)
        liveness.on_readiness(self._readiness_changed)
        super().init_process()

    def run(self) -> None:
        if self.gen3d_board is not None:  # another worker filled up: look at the board again
            wake = self.gen3d_board.wake_fd(self.gen3d_slot)
            self.poller.register(wake, selectors.EVENT_READ, self._woken)
        super().run()

    def _woken(self, fd: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass  # drained; the loop's next turn re-checks the listeners

    # ------------------------------------------------------------ this worker's load

    @property
    def load(self) -> int:
        """Connections whose request still needs this worker's model."""
        return self._model_load.of(self.nr_conns)

    def handle(self, conn: Any) -> Any:
        _handling.conn = conn
        try:
            return super().handle(conn)
        finally:
            _handling.conn = None

    def _request_past_model(self) -> None:
        """On the request's thread: its answer is computed; publish the lighter load now,
        so the other workers see it before this one's loop turns."""
        conn = getattr(_handling, "conn", None)
        if conn is not None and self._model_load.past_model(conn):
            self._publish()

    def _readiness_changed(self) -> None:
        """On the loading thread: the model is ready (or failed). Publish it and wake every
        worker, this one included, so all re-check which sockets to take now rather than
        on their loops' next turns (up to gunicorn's 1 s poll each): until then a new
        worker took nothing, or the others did not yet pack behind it."""
        self._publish()
        if self.gen3d_board is not None:
            self.gen3d_board.wake_all()

    def finish_request(self, conn: Any, fs: Any) -> None:
        self._model_load.ended(conn)
        super().finish_request(conn, fs)

    # ------------------------------------------------------------ which sockets to take

    def _publish(self) -> bool:
        """Write this worker's readiness and load to the board; returns the readiness."""
        record = liveness.current()
        ready = record is None or record.ready()
        if self.gen3d_board is not None:
            self.gen3d_board.mark(self.gen3d_slot, ready, self.load)
        return ready

    def _eligible(self, listener: Any) -> bool:
        board = self.gen3d_board
        if liveness.current() is None or board is None:
            return True
        ready = self._publish()
        others = board.others(self.gen3d_slot)
        if not ready:
            return not others  # nobody ready: answer (503) rather than leave it waiting
        if self._is_control(listener):
            return True
        return takes_invocation(
            self.load,
            others,
            pack=self.gen3d_pack,
            # without the front one socket carries /ping too: never leave it in the backlog
            lookahead=self.gen3d_lookahead if self._control_path else 0,
            lower_has_room=board.lower_with_room(self.gen3d_slot, self.gen3d_pack),
        )

    def _is_control(self, listener: Any) -> bool:
        if self._control_path is None:
            return False  # one socket for everything (no front): no load balancing
        try:
            return listener.getsockname() == self._control_path
        except OSError:
            return False

    def _sync_listeners(self) -> None:
        """Register exactly the listeners this worker should take from now."""
        for listener in self.sockets:
            want = self._accepting and self._eligible(listener)
            fd = listener.fileno()
            if want and fd not in self._registered:
                listener.setblocking(False)
                self.poller.register(listener, selectors.EVENT_READ, self.accept)
                self._registered.add(fd)
            elif not want and fd in self._registered:
                self.poller.unregister(listener)
                self._registered.discard(fd)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's own switch (capacity, shutdown); the listeners follow in _sync_listeners
        self._accepting = enabled
        self._sync_listeners()

    def accept(self, listener: Any) -> None:
        if not self._eligible(listener):  # the run loop re-checks on its next turn
            self.poller.unregister(listener)
            self._registered.discard(listener.fileno())
            return
        super().accept(listener)
        self._publish()  # the load just changed
        if self.gen3d_pack > 1 and self.load == self.gen3d_pack and self.gen3d_board:
            # full: the next worker takes from now on, and it may be asleep
            self.gen3d_board.wake_others(self.gen3d_slot)

    # ------------------------------------------------------------ heartbeat

    def notify(self) -> None:
        if hasattr(self, "_registered"):
            self._sync_listeners()  # every turn of the run loop: loads change as requests end
        record = liveness.current()
        why = record.wedged() if record is not None else None
        if why is None:
            super().notify()
            return
        if not self._reported:
            self._reported = True
            log.critical("worker %s is wedged (%s): heartbeat stopped for a restart", self.pid, why)
