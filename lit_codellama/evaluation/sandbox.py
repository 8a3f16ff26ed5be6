"""Run untrusted, model-written programs: one process tree per program, isolated by the kernel, under hard limits.

Monkey-patching the interpreter (`reliability_guard`) is not a sandbox: `posix.system`, `os.execv`, `ctypes`,
`importlib.reload(os)` and sockets all get around it. Here each program runs under bubblewrap (`bwrap`):

- PID, network, IPC, UTS and cgroup namespaces. A fresh network namespace has only a loopback that is down, so
  no connection succeeds, not even to 127.0.0.1. bwrap's init is pid 1 of the PID namespace: when it exits, the
  kernel kills everything left in the namespace, including processes that called `setsid` or double-forked.
- A new root holding only /usr, /etc and the interpreter's prefix, read-only; a private /tmp and an empty
  working directory /work (size-limited tmpfs, gone afterwards); the source files read-only under /input.
  Nothing of /root, /home, the project or the caller's /tmp is visible.
- A scrubbed environment: PATH, HOME, TMPDIR and LANG only.
- rlimits (set with util-linux `prlimit`): CPU seconds, address space, file size (which also caps captured
  stdout/stderr, written to a file), number of processes, open files, no core dumps.
- A seccomp filter (`seccomp.py`) denies what namespaces and rlimits do not cover: nested user namespaces (in one
  a program could mount a tmpfs without the size cap), mounts, the kernel keyrings (the session keyring is the
  harness's), tracing, BPF, io_uring.
- A memory cgroup per program bounds all its memory together (processes, tmpfs files, memfds, shared memory) where
  the machine lets the harness create one (a writable cgroup v2 or v1 memory hierarchy, normally as root).
  Elsewhere memory is bounded per process by RLIMIT_AS, and memfd_create and SysV shared memory, which it does not
  see, are denied. Which bound applies is logged and recorded in `Isolation.detail`.
- When the harness is root, the program runs as a fresh unprivileged uid (util-linux `setpriv`), with no
  capabilities and no_new_privs. This is what makes RLIMIT_NPROC hold (the kernel never applies it to root),
  and it can neither signal nor read anything the harness owns. Not root, bwrap adds a user namespace.

The harness itself is outside all of this: the program cannot see its pid, cannot signal it, and can only fill
a file whose size the kernel caps. A wall-clock timeout kills bwrap's pid 1 (and so the whole namespace).

A pass means the tests ran to their end. Each run gets a fresh random token on its stdin (a pipe, filled before
the program starts; the token is in neither its files nor its environment), and passes only if it exits 0 *and*
its output holds the token. Each language's epilogue (execution.py) copies stdin to stdout after its tests have
returned, so a program that exits 0 early (`os._exit(0)`, `exit 0`, `System.exit(0)` in a static initializer) is
"exited_early". Threat model: this stops programs that end or skip their tests, not code written against this
harness that reads stdin itself and prints the token (it shares the process with the tests; nothing in-process
can be hidden from it).

When bwrap cannot set up its sandbox here, `Sandbox` refuses to start, saying why and how to fix it. The weak
mode (rlimits and a session that is killed at the end; no filesystem, network or user isolation) runs only when
the caller passes `allow_weak=True` *and* the environment has LIT_CODELLAMA_ALLOW_WEAK_SANDBOX=1.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.evaluation.seccomp import seccomp_filter

log = logging.getLogger(__name__)

WEAK_ENV_VAR = "LIT_CODELLAMA_ALLOW_WEAK_SANDBOX"
INSTALL_HINT = "install bubblewrap (`apt-get install -y bubblewrap`, or your distribution's package)"
STATUSES = ("passed", "failed", "exited_early", "timeout", "killed")
# Signals that mean a limit or someone else ended the program ("killed"); a program that crashes on its own
# (SIGABRT from a failed C assert, SIGSEGV...) has "failed", like one that exits non-zero.
KILL_SIGNALS = ("SIGKILL", "SIGXFSZ")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_UID_BASE, _UID_SPAN = 1 << 20, 1 << 20  # throwaway uids; each run gets the next one (no two runs share a count)
_uids = itertools.count(random.randrange(_UID_SPAN))


class SandboxUnavailableError(LitCodeLlamaError, RuntimeError):
    """The OS cannot isolate untrusted code and the weaker mode was not explicitly allowed."""


class RunCancelled(Exception):
    """The run's `Cancellation` was set: its program was killed, or never started."""


class Cancellation:
    """A flag that running programs wait on together with their own exit: once set (on Ctrl-C, say), each running
    program is killed at once and no new one starts. A pipe, so that it can be waited on with select."""

    def __init__(self):
        self._read, self._write = os.pipe()

    def set(self) -> None:
        os.write(self._write, b"x")

    def is_set(self) -> bool:
        return _ready(self._read, 0)

    def fileno(self) -> int:
        return self._read

    def __enter__(self) -> Cancellation:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._read)
        os.close(self._write)


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Where no cgroup can bound a program's memory, its worst case is
    n_proc * memory_mb + 2 * tmpfs_mb."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int | None = 2048  # RLIMIT_AS; None for runtimes that reserve huge address ranges (JVM, V8)
    total_memory_mb: int = 4096  # all its processes and their tmpfs files, memfds...: a cgroup's bound, if any
    file_mb: int = 16  # RLIMIT_FSIZE: any file the program writes, its captured stdout/stderr included
    tmpfs_mb: int = 64  # size of the private /tmp and of /work, each
    n_proc: int = 32  # RLIMIT_NPROC: processes and threads
    n_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 4096  # how much of the end of stdout+stderr the result keeps


@dataclass(frozen=True)
class ExecResult:
    status: str  # one of STATUSES; "exited_early": status 0 without the token, so the tests did not finish
    returncode: int | None  # exit code, or None if killed by a signal
    signal: str | None  # the signal that ended it, e.g. "SIGXCPU" (CPU limit), "SIGABRT" (a failed C assert)
    duration_s: float
    output: str  # the end of stdout+stderr


@dataclass(frozen=True)
class Isolation:
    mode: str  # "bwrap" or "weak"
    detail: str


class Sandbox:
    """Runs programs isolated by bwrap, or refuses. `run` is thread-safe: call it from many threads at once."""

    def __init__(self, allow_weak: bool = False, bwrap: str | None = "bwrap"):
        self._bwrap = shutil.which(bwrap) if bwrap else None
        self._cgroups = MemoryCgroups.find()
        self.isolation = _choose_isolation(self._bwrap, allow_weak, self._cgroups)
        self._mounts = _python_prefixes()
        self._seccomp = seccomp_filter(self._cgroups is None) if self.isolation.mode == "bwrap" else b""

    def run(
        self, argv: Sequence[str], files: Mapping[str, str], limits: Limits = Limits(),
        cancel: Cancellation | None = None,
    ) -> ExecResult:
        """Run `argv` with `files` (name -> text) placed read-only in the input directory.

        `{input}` in argv stands for the input directory; the working directory is empty and writable.
        The program's stdin holds one line, this run's token: it passes when it exits 0 and prints the token.
        Raises RunCancelled once `cancel` is set.
        """
        if cancel is not None and cancel.is_set():
            raise RunCancelled
        token = f"{secrets.token_hex(16)}\n".encode()
        with tempfile.TemporaryDirectory(prefix="lcl-sandbox-") as host_dir:
            host = Path(host_dir)
            input_dir = _write_inputs(host / "input", files)
            with open(host / "output", "wb") as output:
                start = time.monotonic()
                if self.isolation.mode == "bwrap":
                    with self._memory_cgroup(limits) as cgroup:
                        code, ending = _run_bwrap(self._bwrap, self._mounts, self._seccomp, cgroup, argv,
                                                  input_dir, output, limits, token, cancel)
                else:
                    code, ending = _run_weak(argv, input_dir, host / "work", output, limits, token, cancel)
                duration = time.monotonic() - start
            output = (host / "output").read_bytes()  # at most file_mb
        if ending == "cancelled":
            raise RunCancelled
        finished = token in output
        text = output.replace(token, b"")[-limits.output_bytes:].decode("utf-8", errors="replace")
        return _result(code, ending == "timeout", duration, text, finished)

    def _memory_cgroup(self, limits: Limits):
        if self._cgroups is None:
            return contextlib.nullcontext(None)
        return self._cgroups.child(limits.total_memory_mb << 20)


class MemoryCgroups:
    """Child cgroups of the harness's own memory cgroup, one per program, each with its memory limit (cgroup v2
    `memory.max`, or v1 `memory.limit_in_bytes`, swap included where swap is accounted)."""

    _FILES = {  # hierarchy -> (the limit's file, the swap limit's file, whether the swap limit includes memory)
        "cgroup2": ("memory.max", "memory.swap.max", False),
        "cgroup": ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", True),
    }
    _names = itertools.count()

    def __init__(self, parent: Path, kind: str):
        self.parent, self.kind = parent, kind
        self.detail = (f"a memory cgroup per program (cgroup {'v2' if kind == 'cgroup2' else 'v1'}, "
                       f"under {parent})")

    @classmethod
    def find(cls) -> MemoryCgroups | None:
        """The first of this process's memory cgroups (v2, then v1) under which a limited child can be created."""
        for parent, kind in _own_memory_cgroups():
            cgroups = cls(parent, kind)
            try:
                with cgroups.child(64 << 20):
                    return cgroups
            except OSError as e:
                log.debug("no memory cgroup under %s: %s", parent, e)
        return None

    @contextlib.contextmanager
    def child(self, limit_bytes: int):
        path = self.parent / f"lit-codellama-{os.getpid()}-{next(self._names)}"
        path.mkdir()
        try:
            limit_file, swap_file, swap_includes_memory = self._FILES[self.kind]
            (path / limit_file).write_text(str(limit_bytes))
            if (path / swap_file).exists():  # swap is accounted: allow none beyond the limit
                (path / swap_file).write_text(str(limit_bytes if swap_includes_memory else 0))
            yield path
        finally:
            _remove_cgroup(path)


def _own_memory_cgroups() -> list[tuple[Path, str]]:
    """This process's cgroup directories that may hold a memory controller: (directory, "cgroup2" or "cgroup")."""
    mounts = []  # (hierarchy type, its root inside the hierarchy, mount point, super options)
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            rest = fields[fields.index("-") + 1:]
            mounts.append((rest[0], fields[3], fields[4], rest[2].split(",")))
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            kind = "cgroup2" if controllers == "" else "cgroup" if "memory" in controllers.split(",") else None
            for fstype, root, mount_point, options in mounts:
                if fstype == kind and (kind == "cgroup2" or "memory" in options) and path.startswith(root):
                    found.append((Path(mount_point, os.path.relpath(path, root)), kind))
    return sorted(found, key=lambda f: f[1] != "cgroup2")


def _remove_cgroup(path: Path) -> None:
    """Remove an emptied cgroup; the kernel may take a moment to move out the processes that just exited."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    log.warning("could not remove the memory cgroup %s (processes left in it?)", path)


def _choose_isolation(bwrap: str | None, allow_weak: bool, cgroups: MemoryCgroups | None) -> Isolation:
    problem = _probe_bwrap(bwrap) if bwrap else f"bwrap is not installed; {INSTALL_HINT}"
    if problem is None:
        who = "a throwaway unprivileged uid" if os.geteuid() == 0 else "a user namespace"
        memory = cgroups.detail if cgroups else ("no memory cgroup can be created here, so memory is bounded per "
                                                 "process (RLIMIT_AS) and memfd_create and SysV shm are denied")
        _log_memory_bound_once(memory)
        return Isolation("bwrap", f"bubblewrap ({bwrap}): pid/net/ipc/uts namespaces, read-only system, {who}, "
                                  f"seccomp (no nested namespaces, mounts, keyrings or tracing); memory: {memory}")
    if not (allow_weak and os.environ.get(WEAK_ENV_VAR) == "1"):
        raise SandboxUnavailableError(
            f"cannot isolate untrusted code on this machine: {problem}.\n"
            "Refusing to execute model-written programs. To run them anyway with only rlimits and a separate "
            "session (no filesystem, network or user isolation), pass --allow-weak-sandbox (allow_weak=True) AND "
            f"set {WEAK_ENV_VAR}=1 (got allow_weak={allow_weak}, {WEAK_ENV_VAR}={os.environ.get(WEAK_ENV_VAR)!r})."
        )
    _warn_weak_once(problem)
    return Isolation("weak", f"rlimits and session kill only ({problem})")


@cache
def _log_memory_bound_once(memory: str) -> None:
    log.info("sandbox memory bound: %s", memory)


@cache
def _warn_weak_once(problem: str) -> None:
    log.warning("WEAK SANDBOX (%s): programs run with rlimits only; they can read files and use the network", problem)


@cache
def _probe_bwrap(bwrap: str) -> str | None:
    """None if a trivial program runs through the full bwrap + prlimit (+ setpriv) chain, else what went wrong."""
    with tempfile.TemporaryDirectory() as host:
        input_dir = _write_inputs(Path(host) / "input", {})
        try:
            seccomp = _pipe_holding(seccomp_filter(True))
        except OSError as e:
            return str(e)
        command = _bwrap_command(bwrap, (), ["/bin/sh", "-c", "exit 0"], input_dir, Limits(), None, seccomp)
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=30, env={"PATH": SYSTEM_PATH},
                                 pass_fds=(seccomp,))
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{bwrap} could not be started ({e})"
        finally:
            os.close(seccomp)
    if run.returncode != 0:
        return f"{bwrap} cannot set up its sandbox here (exit {run.returncode}: {run.stderr.strip()})"
    return None


def _pipe_holding(data: bytes) -> int:
    """The read end of a pipe that holds `data` (at most a pipe's buffer) and then ends."""
    read, write = os.pipe()
    try:
        os.write(write, data)
    finally:
        os.close(write)
    return read


def _run_bwrap(
    bwrap: str, mounts, seccomp: bytes, cgroup: Path | None, argv, input_dir: Path, output, limits: Limits,
    token: bytes, cancel: Cancellation | None,
) -> tuple[int, str]:
    """The exit status and how the wait ended (see `_wait`)."""
    info_read, info_write = os.pipe()
    seccomp_fd, stdin = _pipe_holding(seccomp), _pipe_holding(token)
    command = _bwrap_command(bwrap, mounts, argv, input_dir, limits, info_write, seccomp_fd)
    if cgroup is not None:  # the shell joins the cgroup, then becomes bwrap: every process of the program is in it
        command = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup / "cgroup.procs"), *command]
    try:
        proc = subprocess.Popen(
            command, stdin=stdin, stdout=output, stderr=subprocess.STDOUT,
            env={"PATH": SYSTEM_PATH}, pass_fds=(info_write, seccomp_fd),
        )
    finally:
        for fd in (info_write, seccomp_fd, stdin):
            os.close(fd)
    with open(info_read, "rb") as info:
        init = _open_init(info.read())  # bwrap writes the JSON and closes the fd once the namespace exists
    if init is None:  # bwrap failed before creating its namespace: nothing else can be running
        ending = _wait(proc.pid, limits.wall_s, cancel)
        if ending != "exited":
            proc.kill()
        return proc.wait(), ending
    try:
        ending = _wait(proc.pid, limits.wall_s, cancel)
        if ending != "exited":
            _kill(init)
        code = proc.wait()
        # bwrap reports the program's exit before its init has died (of --die-with-parent); the init finishes
        # exiting only after the kernel has killed and reaped everything else in its PID namespace.
        if not _ready(init, 5.0):
            _kill(init)
            _ready(init, None)
        return code, ending
    finally:
        os.close(init)


def _open_init(info: bytes) -> int | None:
    """A pidfd for the sandbox's init (pid 1 of its PID namespace), from bwrap's --info-fd JSON."""
    try:
        return os.pidfd_open(json.loads(info)["child-pid"])
    except (ValueError, KeyError, ProcessLookupError):
        return None


def _wait(pid: int, seconds: float, cancel: Cancellation | None) -> str:
    """Wait for child `pid` to exit, at most `seconds`, without reaping it (`Popen.wait(timeout)` polls with
    sleeps of up to 50 ms, more than the whole sandbox costs a short program): "exited", "timeout" or
    "cancelled"."""
    pidfd = os.pidfd_open(pid)
    try:
        ready = select.select([pidfd, *([cancel.fileno()] if cancel else [])], [], [], seconds)[0]
    finally:
        os.close(pidfd)
    return "exited" if pidfd in ready else "cancelled" if ready else "timeout"


def _ready(fd: int, seconds: float | None) -> bool:
    return bool(select.select([fd], [], [], seconds)[0])


def _kill(pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def _bwrap_command(
    bwrap: str, mounts, argv, input_dir: Path, limits: Limits, info_fd: int | None, seccomp_fd: int
) -> list[str]:
    tmpfs_bytes = str(limits.tmpfs_mb << 20)
    args = [
        bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "sandbox", "--die-with-parent", "--new-session", "--seccomp", str(seccomp_fd),
        *(["--info-fd", str(info_fd)] if info_fd is not None else []),
        *_system_dirs_args(),
    ]
    for path in sorted(set(mounts)):
        args += [*_parent_dirs_args(path), "--ro-bind", path, path]
    args += [
        "--proc", "/proc", "--dev", "/dev",
        "--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", "/tmp",
        "--perms", "1777", "--size", tmpfs_bytes, "--tmpfs", "/work",
        "--ro-bind", str(input_dir), "/input", "--chdir", "/work", "--clearenv",
    ]
    for key, value in _program_env("/work").items():
        args += ["--setenv", key, value]
    if os.geteuid() == 0:  # privileged bwrap: keep only the capabilities setpriv needs to become the throwaway uid
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        drop_root = _setpriv_args(_UID_BASE + next(_uids) % _UID_SPAN)
    else:
        args += ["--unshare-user"]
        drop_root = []
    program = [arg.replace("{input}", "/input") for arg in argv]
    return [*args, "--", *_prlimit_args(limits), *drop_root, *program]


def _run_weak(
    argv, input_dir: Path, work: Path, output, limits: Limits, token: bytes, cancel: Cancellation | None
) -> tuple[int, str]:
    work.mkdir()
    program = [arg.replace("{input}", str(input_dir)) for arg in argv]
    stdin = _pipe_holding(token)
    try:
        proc = subprocess.Popen(
            [*_prlimit_args(limits), *program], cwd=work, stdin=stdin, stdout=output,
            stderr=subprocess.STDOUT, env=_program_env(str(work)), start_new_session=True,
        )
    finally:
        os.close(stdin)
    ending = _wait(proc.pid, limits.wall_s, cancel)
    with contextlib.suppress(ProcessLookupError):  # whatever is left in its session (a process that left it survives)
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(), ending


def _system_dirs_args() -> list[str]:
    """/usr and /etc read-only, and /bin, /lib... as the symlinks into /usr (or the directories) they are."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _parent_dirs_args(path: str) -> list[str]:
    """Create a mount point's parents world-traversable (bwrap would make them 0700)."""
    parents = [p for p in reversed(Path(path).parents) if p != Path("/")]
    return [arg for p in parents for arg in ("--perms", "0755", "--dir", str(p))]


def _python_prefixes() -> tuple[str, ...]:
    """This interpreter's installation (programs run with it), unless it lives under /usr."""
    paths = {os.path.realpath(sys.base_prefix), os.path.dirname(os.path.realpath(sys.executable))}
    return tuple(sorted(p for p in paths if not (p + "/").startswith("/usr/")))


def _prlimit_args(limits: Limits) -> list[str]:
    memory = [] if limits.memory_mb is None else [f"--as={limits.memory_mb << 20}"]
    return [
        "prlimit", f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}", *memory, f"--fsize={limits.file_mb << 20}",
        f"--nproc={limits.n_proc}", f"--nofile={limits.n_files}", "--core=0", "--",
    ]


def _setpriv_args(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def _program_env(home: str) -> dict[str, str]:
    return {"PATH": SYSTEM_PATH, "HOME": home, "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


def _write_inputs(directory: Path, files: Mapping[str, str]) -> Path:
    directory.mkdir()
    directory.chmod(0o755)  # readable by the throwaway uid whatever the umask
    for name, text in files.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"input file name {name!r} must be a plain file name")
        (directory / name).write_text(text, encoding="utf-8")
        (directory / name).chmod(0o644)
    return directory


def _signal_of(returncode: int) -> str | None:
    """Popen reports death by signal N as -N; bwrap reports its child's as exit 128 + N."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    try:
        return signal.Signals(number).name if number else None
    except ValueError:
        return None


def _result(code: int, timed_out: bool, duration: float, output: str, finished: bool) -> ExecResult:
    """`finished`: the program printed its token, so its tests ran to their end."""
    sig = _signal_of(code)
    if timed_out or sig == "SIGXCPU":
        status = "timeout"
    elif sig in KILL_SIGNALS:
        status = "killed"
    elif code == 0:
        status = "passed" if finished else "exited_early"
    else:
        status = "failed"
    return ExecResult(status, None if sig else code, sig, duration, output)
