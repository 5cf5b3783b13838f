"""One embedded verification worker among the processes of one ``relaykit serve``.

``relaykit serve --workers N`` (N > 1) starts N processes from one app factory, and each
builds its own :class:`~relaykit.services.Services` with an embedded worker. One worker is
enough for one machine's API (it holds ``RELAYKIT_WORKER_CONCURRENCY`` checks in flight), and
N of them would each poll the database. So the processes contend for an exclusive,
non-blocking ``flock`` on ``RELAYKIT_HOME/verification-worker.lock``
(:class:`SharedWorker`): the holder runs the worker; the others do not, and try the lock
again every second (at most every half ``RELAYKIT_WORKER_HEARTBEAT``), so when the holder
dies (uvicorn's supervisor starts a new process in its place) another takes over. The
kernel releases a ``flock`` when the process holding it dies, so no lock goes stale.

Only ``serve``'s processes contend (``Services.open(…, shared_worker=True)``): a lone
``relaykit serve`` and an app a test builds in its own process run their worker as before,
with no lock and no socket. That keeps one process exactly as it was and sidesteps a trap:
``flock`` locks belong to an open file description, so two apps in one process that each
opened the file would shut each other out. Separate ``relaykit worker`` processes, and other
``serve`` commands, coordinate as they always did: through the table and its leases.

Waking across processes: a create wakes the worker at once (``on_pending``), but in a process
that does not hold the lock the worker is in another process. The holder binds a Unix
datagram socket, ``RELAYKIT_HOME/verification-worker.sock``, reads it on its event loop and
wakes its worker on any datagram; the others send it one byte, without blocking and ignoring
every error: the worker's poll (``RELAYKIT_WORKER_POLL``) stays the safety net. A socket path
longer than ``AF_UNIX`` allows (107 bytes) means no socket, and the poll alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio

from relaykit.worker import VerificationWorker

logger = logging.getLogger("relaykit.worker")

#: Under ``RELAYKIT_HOME``: the file whose lock says which process runs the worker.
LOCK_FILE_NAME = "verification-worker.lock"
#: Under ``RELAYKIT_HOME``: the holder's wake socket.
SOCKET_FILE_NAME = "verification-worker.sock"
#: The longest path an ``AF_UNIX`` address holds (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH_BYTES = 107
#: Seconds between a waiting process's tries of the lock, at most.
RETRY_SECONDS = 1.0


def try_lock(path: Path) -> int | None:
    """A descriptor of ``path`` holding its exclusive ``flock``, or ``None`` when another
    open file holds it. Closing the descriptor (or the process ending) releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def socket_address(path: Path) -> bytes | None:
    """``path`` as an ``AF_UNIX`` address, or ``None`` when it is too long to be one."""
    address = os.fsencode(path)
    return address if len(address) <= MAX_SOCKET_PATH_BYTES else None


class SharedWorker:
    """``worker`` run by at most one of the processes that share ``home`` (see the module
    docstring). :meth:`run` until :meth:`stop`; :meth:`wake` from ``on_pending``;
    :meth:`heartbeat_owner` for ``/ready``."""

    def __init__(
        self, worker: VerificationWorker, home: Path, *, retry: float = RETRY_SECONDS
    ) -> None:
        self.worker = worker
        self.lock_path = home / LOCK_FILE_NAME
        self.socket_path = home / SOCKET_FILE_NAME
        self.retry = retry
        #: whether this process holds the lock (and runs the worker) now
        self.holding = False
        self._address = socket_address(self.socket_path)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def heartbeat_owner(self) -> str | None:
        """The worker whose heartbeat ``/ready`` watches: this process's while it runs it,
        else ``None`` (any worker's fresh heartbeat will do)."""
        return self.worker.owner if self.holding else None

    def wake(self) -> None:
        """A row became due: wake the worker, in this process or in the one holding the
        lock. Never blocks, never raises. Safe from any thread."""
        if self.holding:
            self.worker.wake()
            return
        if self._address is None:
            return
        # Nobody bound yet (a takeover under way), the holder's queue full (it has wakes
        # enough), closed at shutdown: the poll is the safety net.
        with contextlib.suppress(OSError):
            self._sender.sendto(b"\x01", self._address)

    def stop(self) -> None:
        """Stop the worker if it runs here, or stop waiting for the lock. Safe from any
        thread."""
        self._stopping = True
        self.worker.stop()
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stopped.set)

    async def run(self) -> None:
        """Until :meth:`stop`: take the lock when it is free and run the worker while holding
        it (returning its leases and the lock when stopped)."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        waiting_logged = False
        try:
            while not self._stopping:
                try:
                    fd = try_lock(self.lock_path)
                except OSError as exc:
                    # A file system without flock: run the worker as a lone process would
                    # (several workers share the table safely; only the polls add up).
                    logger.warning(
                        "the worker lock %s cannot be taken (%s): this process runs its own "
                        "verification worker",
                        self.lock_path,
                        type(exc).__name__,
                    )
                    await self._hold(wake_socket=False)
                    return
                if fd is None:
                    if not waiting_logged:
                        logger.info(
                            "the verification worker runs in another process of this server "
                            "(%s is locked); this one wakes it, and takes over if it stops",
                            self.lock_path,
                        )
                        waiting_logged = True
                    with anyio.move_on_after(self.retry):
                        await self._stopped.wait()
                    continue
                try:
                    if waiting_logged:
                        logger.info("took over the verification worker (%s)", self.lock_path)
                    await self._hold()
                finally:
                    os.close(fd)  # releases the lock, once the socket is gone
                return
        finally:
            self.close()

    def close(self) -> None:
        """Close the sending socket (idempotent; a later :meth:`wake` does nothing)."""
        self._sender.close()

    async def _hold(self, *, wake_socket: bool = True) -> None:
        """Run the worker, woken by the datagrams other processes send, until it stops."""
        if self._stopping:  # stopped while the lock was being taken: do not start it
            return
        with self._wake_socket() if wake_socket else contextlib.nullcontext():
            self.holding = True
            try:
                await self.worker.run()
            finally:
                self.holding = False

    @contextlib.contextmanager
    def _wake_socket(self) -> Iterator[None]:
        """The bound wake socket, read on this event loop, for the time of the block; none
        (the poll alone) when its path is too long or it cannot be bound."""
        if self._address is None:
            logger.warning(
                "no wake socket: its path %s is longer than %d bytes; creates in the other "
                "processes are verified at the worker's next poll",
                self.socket_path,
                MAX_SOCKET_PATH_BYTES,
            )
            yield
            return
        loop = asyncio.get_running_loop()
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.setblocking(False)
            # Only the lock's holder binds, so a file already there is a dead holder's.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._address)
            receiver.bind(self._address)
            os.chmod(self._address, 0o600)
            loop.add_reader(receiver.fileno(), self._drain, receiver)
        except (OSError, NotImplementedError) as exc:  # NotImplementedError: a loop without
            receiver.close()  # add_reader (Windows' proactor)
            with contextlib.suppress(OSError):
                os.unlink(self._address)
            logger.warning(
                "no wake socket at %s (%s); creates in the other processes are verified at "
                "the worker's next poll",
                self.socket_path,
                type(exc).__name__,
            )
            yield
            return
        try:
            yield
        finally:
            loop.remove_reader(receiver.fileno())
            receiver.close()
            with contextlib.suppress(OSError):
                os.unlink(self._address)

    def _drain(self, receiver: socket.socket) -> None:
        """Read every datagram waiting (their content means nothing) and wake the worker."""
        while True:
            try:
                receiver.recv(16)
            except OSError:  # BlockingIOError: none left
                break
        self.worker.wake()
