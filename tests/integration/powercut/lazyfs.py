"""A FUSE filesystem that loses what was not fsynced when the power goes (after LazyFS).

The filesystem mirrors a backing directory (the "disk"). File contents live in this process's
memory (the "page cache"): reads and writes go to memory, and only `fsync`/`fdatasync` copy a
file's dirty pages and size to the backing file. Namespace changes (create, unlink, rename,
mkdir) go to the backing directory at once, as a journaling filesystem commits them.

A power cut is: SIGKILL the writer, then SIGKILL this process (its memory, every unsynced
write, is gone), detach the dead mount, and mount a fresh instance over the same backing
directory, which then shows exactly what had been fsynced. `LazyMount` does that for a test.

Writes are not cached by the kernel (libfuse 3 leaves the writeback cache off), so a write(2)
that returned has reached this process. SQLite's WAL index (`-shm`) is mmapped MAP_SHARED: that
works because files are opened without direct_io, so the kernel pages it through here like any
file (SQLite never fsyncs it and rebuilds it after a crash, which is what the cut exercises).
POSIX locks are left to the kernel (no `lock` callback), which is right for one machine.

Run: python -m tests.integration.powercut.lazyfs BACKING_DIR MOUNTPOINT
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

PAGE = 4096
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Node:
    """One file's cached contents; `backing` is None once the file was unlinked while open."""

    backing: str | None
    data: bytearray
    dirty: set[int] = field(default_factory=set)  # page numbers written since the last fsync
    resized: bool = False  # the size differs from what was last fsynced

    def write(self, offset: int, chunk: bytes) -> None:
        end = offset + len(chunk)
        if end > len(self.data):
            self._grow(end)
        self.data[offset:end] = chunk
        self.dirty.update(range(offset // PAGE, (end - 1) // PAGE + 1))

    def truncate(self, length: int) -> None:
        if length > len(self.data):
            self._grow(length)
        elif length < len(self.data):
            del self.data[length:]
            self.dirty = {p for p in self.dirty if p * PAGE < length}
            if length % PAGE:
                self.dirty.add(length // PAGE)
            self.resized = True

    def _grow(self, length: int) -> None:
        old = len(self.data)
        self.data.extend(bytes(length - old))
        self.dirty.update(range(old // PAGE, (length - 1) // PAGE + 1))
        self.resized = True

    def sync(self) -> None:
        """fsync: the dirty pages and the size reach the backing file (the disk)."""
        if self.backing is None or not (self.dirty or self.resized):
            self.dirty.clear()
            return
        fd = os.open(self.backing, os.O_WRONLY)
        try:
            for page in sorted(self.dirty):
                start = page * PAGE
                if start < len(self.data):
                    os.pwrite(fd, bytes(self.data[start : start + PAGE]), start)
            os.ftruncate(fd, len(self.data))
        finally:
            os.close(fd)
        self.dirty.clear()
        self.resized = False


def _filesystem(backing_root: str) -> Any:
    import mfusepy as fuse

    class LazyFS(fuse.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.mutex = threading.Lock()
            self.nodes: dict[str, Node] = {}  # by path: the page cache outlives close()
            self.handles: dict[int, Node] = {}
            self.fh = itertools.count(1)

        def _real(self, path: str) -> str:
            return os.path.join(backing_root, path.lstrip("/"))

        def _node(self, path: str) -> Node:
            node = self.nodes.get(path)
            if node is None:
                real = self._real(path)
                try:
                    with open(real, "rb") as f:
                        node = Node(real, bytearray(f.read()))
                except OSError as exc:
                    raise fuse.FuseOSError(exc.errno or errno.EIO) from None
                self.nodes[path] = node
            return node

        def _call(self, fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except OSError as exc:
                raise fuse.FuseOSError(exc.errno or errno.EIO) from None

        # ------------------------------------------------------------ files

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            with self.mutex:
                st = self._call(os.lstat, self._real(path))
                attrs = {
                    key: getattr(st, key) for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size")
                }
                for key in ("st_atime", "st_mtime", "st_ctime"):
                    attrs[key] = getattr(st, key + "_ns") if self.use_ns else getattr(st, key)
                node = self.handles.get(fh) if fh else self.nodes.get(path)
                if node is not None:
                    attrs["st_size"] = len(node.data)
                attrs["st_blocks"] = (attrs["st_size"] + 511) // 512
                return attrs

        def open(self, path: str, flags: int) -> int:
            with self.mutex:
                node = self._node(path)
                if flags & os.O_TRUNC:
                    node.truncate(0)
                fh = next(self.fh)
                self.handles[fh] = node
                return fh

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            with self.mutex:
                real = self._real(path)
                existed = os.path.exists(real)
                self._call(lambda: os.close(os.open(real, os.O_CREAT | os.O_WRONLY, mode)))
                node = self._node(path) if existed else Node(real, bytearray())
                self.nodes[path] = node
                fh = next(self.fh)
                self.handles[fh] = node
                return fh

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            with self.mutex:
                return bytes(self.handles[fh].data[offset : offset + size])

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with self.mutex:
                self.handles[fh].write(offset, data)
                return len(data)

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            with self.mutex:
                node = self.handles.get(fh) if fh else None
                (node or self._node(path)).truncate(length)
                return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            with self.mutex:
                self._call(self.handles[fh].sync)
                return 0

        def flush(self, path: str, fh: int) -> int:
            return 0  # close() is not a sync

        def release(self, path: str, fh: int) -> int:
            with self.mutex:
                self.handles.pop(fh, None)
                return 0

        # ------------------------------------------------------------ namespace (durable at once)

        def unlink(self, path: str) -> int:
            with self.mutex:
                self._call(os.unlink, self._real(path))
                node = self.nodes.pop(path, None)
                if node is not None:
                    node.backing = None
                return 0

        def rename(self, old: str, new: str) -> int:
            with self.mutex:
                self._call(os.rename, self._real(old), self._real(new))
                moved = {p: n for p, n in self.nodes.items() if p == old or p.startswith(old + "/")}
                for path, node in moved.items():
                    del self.nodes[path]
                    target = new + path[len(old) :]
                    self.nodes.pop(target, None)
                    node.backing = self._real(target)
                    self.nodes[target] = node
                return 0

        def mkdir(self, path: str, mode: int) -> int:
            with self.mutex:
                self._call(os.mkdir, self._real(path), mode)
                return 0

        def rmdir(self, path: str) -> int:
            with self.mutex:
                self._call(os.rmdir, self._real(path))
                return 0

        def readdir(self, path: str, fh: int) -> list[str]:
            with self.mutex:
                return [".", "..", *self._call(os.listdir, self._real(path))]

        def chmod(self, path: str, mode: int) -> int:
            with self.mutex:
                self._call(os.chmod, self._real(path), mode)
                return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            with self.mutex:
                self._call(os.chown, self._real(path), uid, gid)
                return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            with self.mutex:
                self._call(
                    lambda: os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
                )
                return 0

        def access(self, path: str, amode: int) -> int:
            if not os.path.lexists(self._real(path)):
                raise fuse.FuseOSError(errno.ENOENT)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            st = os.statvfs(backing_root)
            keys = (
                "f_bsize",
                "f_frsize",
                "f_blocks",
                "f_bfree",
                "f_bavail",
                "f_files",
                "f_ffree",
                "f_namemax",
            )
            return {key: getattr(st, key) for key in keys}

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            return 0

    return LazyFS()


def serve(backing: str, mountpoint: str) -> None:
    import mfusepy as fuse

    fuse.FUSE(_filesystem(backing), mountpoint, foreground=True, nothreads=False, hard_remove=True)


class LazyMount:
    """A LazyFS over `backing` mounted at `mountpoint`; `cut()` is a power cut, then a fresh mount."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.proc: subprocess.Popen[bytes] | None = None
        self.cuts = 0
        backing.mkdir(parents=True, exist_ok=True)
        mountpoint.mkdir(parents=True, exist_ok=True)

    def mount(self, timeout: float = 20.0) -> None:
        log = (self.backing.parent / f"{self.backing.name}.lazyfs.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.powercut.lazyfs",
                str(self.backing),
                str(self.mountpoint),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                raise RuntimeError(f"lazyfs exited with {self.proc.returncode}: see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"lazyfs did not mount {self.mountpoint} in {timeout} s")
            time.sleep(0.02)

    def cut(self) -> None:
        """The power goes: unsynced writes are lost (the caller has killed its writers first)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._detach(lazy=True)
        self.cuts += 1
        self.mount()

    def unmount(self) -> None:
        """Unmount (lazily if a file is still open there) and stop the filesystem process."""
        if self.proc is None:
            return
        try:
            if not self._detach(lazy=False, tries=20):
                self._detach(lazy=True, tries=50)
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None

    def _detach(self, *, lazy: bool, tries: int = 50) -> bool:
        error = ""
        for _ in range(tries):
            done = subprocess.run(
                ["fusermount3", "-u", *(["-z"] if lazy else []), str(self.mountpoint)],
                capture_output=True,
                check=False,
            )
            if done.returncode == 0 or not self.mounted():
                return True
            error = done.stderr.decode().strip()
            time.sleep(0.1)  # EBUSY: a reader that is closing its files
        if lazy:
            raise RuntimeError(f"fusermount3 -u -z {self.mountpoint}: {error}")
        return False

    def mounted(self) -> bool:
        """Whether the kernel still lists the mount (a dead FUSE mount fails stat, so ismount says no)."""
        target = os.fsencode(os.path.realpath(self.mountpoint))
        with open("/proc/self/mountinfo", "rb") as f:
            return any(line.split()[4] == target for line in f)

    def __enter__(self) -> Self:
        self.mount()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unmount()


def fuse_unavailable() -> str | None:
    """Why this machine cannot mount a LazyFS (None when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy/libfuse3 unavailable: {exc}"
    if subprocess.run(["which", "fusermount3"], capture_output=True, check=False).returncode != 0:
        return "fusermount3 (Debian fuse3) is not installed"
    return None


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    serve(sys.argv[1], sys.argv[2])
