"""One run per output folder: a run holds `<output_dir>/.run.lock` from its start to its end, and a second run started
into the same `--output_dir` is refused at once (`UnavailableError`, exit status 3) with one line naming the holder.

Without it, two runs wrote the same checkpoints and model files in turn: one of them crashed at its first save with a
misleading "No such file or directory", the other went on.

How the lock is held, and what happens to a lock a run could not release:

- The lock is an `fcntl.flock` on the lock file. The kernel drops it when its process ends, however it ends (a crash,
  `kill -9`, the OOM killer): a later run takes it, and logs whose lock it took over. The file records the holder's
  pid, host, start time and command, so that a refused run can say who holds the folder; a run that ends (also by an
  error, Ctrl-C or SIGTERM) removes it.
- On a file system without `flock` (the call fails: some FUSE and Lustre mounts without `-o flock`, NFS without a lock
  daemon), the file's existence is the lock (created with `O_EXCL`). A lock recorded by this machine whose process is
  dead (or from before its last boot) is taken over with a log line; one recorded by another machine cannot be
  checked from here and is refused: the message says to remove the file if that process is surely gone.

Several machines (one run across nodes, or runs started on different nodes into a shared folder): on NFS (v3 with its
lock manager, v4) `flock` is shared by every client, so a second run is refused whichever machine starts it, and the
lock of a machine that crashed is released by the server once the client's lease runs out (about 90 s on NFSv4). Not
covered: mounts whose locks are per machine (NFS with `local_lock=flock` or `local_lock=all`, Lustre `-o localflock`),
where two runs started on two machines into one folder are not told apart; containers of one machine with different
host names count as different machines in the file-system-without-`flock` case. Only the output folder is held:
runs of different output folders may share a `--cache_dir`. Worker processes forked by the run (data loading) share
its lock until they end.

Under `accelerate launch` only the main process of the whole run (`process_index == 0`) takes the lock, and tells the
other processes, which never touch it, whether it got it: a refused launch stops on every process with the same line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time

from recipe.errors import UnavailableError, environment_error
from recipe.training.distributed import broadcast_from_main

logger = logging.getLogger(__name__)

LOCK_FILE_NAME = ".run.lock"
# what `flock` raises on a file system that does not implement it
_FLOCK_UNSUPPORTED_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
# a refused run reads the holder's record; the holder writes it just after taking the lock
_RECORD_READ_ATTEMPTS = 20
_RECORD_READ_PAUSE_SECONDS = 0.05


def _without_secrets(argv: list[str]) -> list[str]:
    """`argv` with the values of `--token`, `--hub_token` and the like hidden: the lock file is readable by all."""
    kept, hide_next = [], False
    for word in argv:
        flag, equals, _ = word.partition("=")
        if hide_next:
            kept.append("***")
        elif flag.startswith("--") and flag.endswith("token") and equals:
            kept.append(f"{flag}=***")
        else:
            kept.append(word)
        hide_next = word.startswith("--") and word.endswith("token") and not equals
    return kept


def _boot_id() -> str | None:
    """This boot of this machine (Linux): a pid recorded before the last reboot names no live process."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class Holder:
    """The run that holds an output folder, as its lock file records it."""

    pid: int
    host: str
    started_at: str
    command: str
    boot_id: str | None = None

    @classmethod
    def this_process(cls) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            command=shlex.join([sys.executable, *_without_secrets(sys.argv)]),
            boot_id=_boot_id(),
        )

    @classmethod
    def from_text(cls, text: str) -> Holder | None:
        """The holder recorded in `text`; `None` for an empty or unreadable record (a holder still writing it, a
        file damaged by a crash)."""
        try:
            fields = json.loads(text)
        except ValueError:
            return None
        if not isinstance(fields, dict) or not isinstance(fields.get("pid"), int) or "host" not in fields:
            return None
        return cls(**{field.name: fields.get(field.name) for field in dataclasses.fields(cls)})

    def to_text(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False) + "\n"

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started_at}"

    def is_surely_gone(self) -> bool:
        """Whether this machine can tell that the holder's process has ended: it ran on this machine (and since its
        last boot) and its pid names no live process. A holder on another machine cannot be checked from here."""
        if self.host != socket.gethostname():
            return False
        if self.boot_id and self.boot_id != _boot_id():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False


class OutputDirLock:
    """The lock that says a run is using `output_dir`.

    Args:
        output_dir (`str`): the run's output folder (created if missing); the lock file is `<output_dir>/.run.lock`.
    """

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE_NAME)
        self.holder: Holder | None = None
        self._fd: int | None = None  # the locked file, while held with flock

    def acquire(self) -> None:
        """Take the lock, or refuse.

        Raises:
            `UnavailableError`: another run holds the folder; the message names it and the ways out.
        """
        if self.holder is not None:
            raise RuntimeError(f"{self.path} is already held by this lock")
        os.makedirs(self.output_dir, exist_ok=True)
        holder = Holder.this_process()
        while not self._try_acquire(holder):
            pass  # the lock file changed between our looks at it: look again
        self.holder = holder

    def release(self) -> None:
        """Remove the lock file and drop the lock. Only the process that took it releases it (a worker process forked
        from it inherits the open file but is not the run)."""
        if self.holder is None or self.holder.pid != os.getpid():
            return
        try:
            if self._fd is not None:
                self._release_flock()
            else:
                self._remove_if_ours()
        finally:
            self.holder, self._fd = None, None

    def _try_acquire(self, holder: Holder) -> bool:
        """One attempt: `True` once the lock is held, `False` to try again, `UnavailableError` when refused."""
        fd, created = self._open_lock_file()
        try:
            if self._flock(fd):
                if not self._is_current_file(fd):
                    return False  # its holder removed it between our open and our lock: no longer the lock
                previous = Holder.from_text(self._read_text(fd))
                if previous is not None:
                    logger.warning(
                        f"{self.path}: taking over the lock of the run with {previous.describe()}: it ended without "
                        "releasing it (the lock was free)"
                    )
                self._write_record(fd, holder)
                self._fd, fd = fd, None  # kept open: closing it would drop the lock
                return True
            if created:  # no flock: creating the file (O_EXCL) took the lock
                self._write_record(fd, holder)
                return True
            stale = self._read_record(fd)
            if stale is None or not stale.is_surely_gone():
                raise self._refusal(stale)
            self._take_over(stale, _identity(os.fstat(fd)))
            return False
        finally:
            if fd is not None:
                os.close(fd)

    def _open_lock_file(self) -> tuple[int, bool]:
        """The lock file opened for reading and writing, and whether this call created it (`O_EXCL`: of two runs
        creating it at once, one does)."""
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                pass
            try:
                return os.open(self.path, os.O_RDWR), False
            except FileNotFoundError:
                continue  # removed between the two calls

    def _flock(self, fd: int) -> bool:
        """Lock `fd` with `flock`: `True` once locked, `False` when the file system has no `flock`.

        Raises:
            `UnavailableError`: another process holds the lock.
        """
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._refusal(self._read_record(fd)) from None
        except OSError as error:
            if error.errno not in _FLOCK_UNSUPPORTED_ERRNOS:
                raise
            logger.info(f"{self.path}: no flock on this file system ({error.strerror}): the file is the lock")
            return False
        return True

    @staticmethod
    def _write_record(fd: int, holder: Holder) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_text().encode("utf-8"), 0)
        os.fsync(fd)

    def _release_flock(self) -> None:
        # removed while still locked: a run that opens the path next finds a new file, never a released one
        try:
            if self._is_current_file(self._fd):
                os.remove(self.path)
            else:
                logger.warning(f"{self.path} was removed or replaced while this run held it; leaving it as it is")
        finally:
            os.close(self._fd)  # drops the flock

    def _is_current_file(self, fd: int) -> bool:
        try:
            return _identity(os.stat(self.path)) == _identity(os.fstat(fd))
        except FileNotFoundError:
            return False

    @staticmethod
    def _read_text(fd: int) -> str:
        return os.pread(fd, 1 << 16, 0).decode("utf-8", errors="replace")

    def _read_record(self, fd: int) -> Holder | None:
        # the holder writes its record just after creating or locking the file
        for _ in range(_RECORD_READ_ATTEMPTS):
            record = Holder.from_text(self._read_text(fd))
            if record is not None:
                return record
            time.sleep(_RECORD_READ_PAUSE_SECONDS)
        return None

    # -- without flock: the file's existence is the lock ---------------------------------------------------------------

    def _read_path(self) -> Holder | None:
        """The lock file's record; `None` when there is no file or no readable record."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return Holder.from_text(self._read_text(fd))
        finally:
            os.close(fd)

    def _take_over(self, stale: Holder, identity: tuple[int, int]) -> None:
        """Move the stale lock file aside (one rename: of two runs taking it over, one wins) and remove it."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another run moved it first
            return
        if _identity(os.stat(aside)) != identity:
            # another run took the stale lock over and created its own in the meantime: give it back
            os.rename(aside, self.path)
            return
        logger.warning(f"{self.path}: taking over the lock of the run with {stale.describe()}: that process has ended")
        os.remove(aside)

    def _remove_if_ours(self) -> None:
        if self._read_path() == self.holder:
            os.remove(self.path)
        else:
            logger.warning(f"{self.path} was removed or replaced while this run held it; leaving it as it is")

    def _refusal(self, holder: Holder | None) -> UnavailableError:
        who = f"the run with {holder.describe()}" if holder is not None else "another run (its record is unreadable)"
        return UnavailableError(
            f"--output_dir {self.output_dir} is in use by {who} (lock file {self.path}): wait for that run to end, "
            f"choose another --output_dir, or, if that process is surely gone, remove {self.path} and start again"
        )


def _identity(status: os.stat_result) -> tuple[int, int]:
    """Which file a path or descriptor is (device, inode): a lock file removed and created again is another file."""
    return status.st_dev, status.st_ino


@contextlib.contextmanager
def holding_output_dir(training_args):
    """Hold `training_args.output_dir` for the block: the main process of the whole run takes its lock, every process
    learns whether it did, and the lock is released when the block ends (also by an exception or a stop).

    Args:
        training_args (`TrainingArguments`): the run's arguments (`output_dir`, `process_index`, `world_size`,
            `device`; its process group, under several processes, is already set up).

    Raises:
        `UnavailableError`: on every process, when another run holds the folder (or it cannot be written).
    """
    # the device sets up the process group, without which every process would count as the main one
    is_main_process = training_args.device is not None and training_args.process_index == 0
    lock = OutputDirLock(training_args.output_dir) if is_main_process else None
    refusal = None
    if lock is not None:
        try:
            lock.acquire()
        except UnavailableError as error:
            refusal = str(error)
        except BaseException as error:
            reported = environment_error(error) if isinstance(error, OSError) else None
            if reported is None:
                # a bug (or Ctrl-C): the other processes must not wait for the verdict forever
                failure = f"the main process failed taking the lock in {training_args.output_dir}: see its error"
                _share_refusal(failure, training_args)
                raise
            refusal = str(reported)  # a full disk, a forbidden or read-only folder
    refusal = _share_refusal(refusal, training_args)
    if refusal is not None:
        raise UnavailableError(refusal)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def _share_refusal(refusal: str | None, training_args) -> str | None:
    """The main process's refusal (`None`: the lock is held) on every process, as UTF-8 bytes."""
    if training_args.world_size <= 1:
        return refusal
    device = training_args.device
    encoded = (refusal or "").encode("utf-8")
    (length,) = broadcast_from_main([len(encoded)], device)
    if not length:
        return None
    values = list(encoded) if training_args.process_index == 0 else [0.0] * int(length)
    return bytes(int(value) for value in broadcast_from_main(values, device)).decode("utf-8")
