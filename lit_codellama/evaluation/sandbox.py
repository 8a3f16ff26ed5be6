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
- When the harness is root, the program runs as a fresh unprivileged uid (util-linux `setpriv`), with no
  capabilities and no_new_privs. This is what makes RLIMIT_NPROC hold (the kernel never applies it to root),
  and it can neither signal nor read anything the harness owns. Not root, bwrap adds a user namespace.

The harness itself is outside all of this: the program cannot see its pid, cannot signal it, and can only fill
a file whose size the kernel caps. A wall-clock timeout kills bwrap's pid 1 (and so the whole namespace).

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

log = logging.getLogger(__name__)

WEAK_ENV_VAR = "LIT_CODELLAMA_ALLOW_WEAK_SANDBOX"
INSTALL_HINT = "install bubblewrap (`apt-get install -y bubblewrap`, or your distribution's package)"
STATUSES = ("passed", "failed", "timeout", "killed")
# Signals that mean a limit or someone else ended the program ("killed"); a program that crashes on its own
# (SIGABRT from a failed C assert, SIGSEGV...) has "failed", like one that exits non-zero.
KILL_SIGNALS = ("SIGKILL", "SIGXFSZ")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
_UID_BASE, _UID_SPAN = 1 << 20, 1 << 20  # throwaway uids; each run gets the next one (no two runs share a count)
_uids = itertools.count(random.randrange(_UID_SPAN))


class SandboxUnavailableError(LitCodeLlamaError, RuntimeError):
    """The OS cannot isolate untrusted code and the weaker mode was not explicitly allowed."""


@dataclass(frozen=True)
class Limits:
    """Per-program limits. Memory is per process: a program's worst case is n_proc * memory_mb + 2 * tmpfs_mb."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int | None = 2048  # RLIMIT_AS; None for runtimes that reserve huge address ranges (JVM, V8)
    file_mb: int = 16  # RLIMIT_FSIZE: any file the program writes, its captured stdout/stderr included
    tmpfs_mb: int = 64  # size of the private /tmp and of /work, each
    n_proc: int = 32  # RLIMIT_NPROC: processes and threads
    n_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 4096  # how much of the end of stdout+stderr the result keeps


@dataclass(frozen=True)
class ExecResult:
    status: str  # one of STATUSES
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
        self.isolation = _choose_isolation(self._bwrap, allow_weak)
        self._mounts = _python_prefixes()

    def run(
        self,
        argv: Sequence[str],
        files: Mapping[str, str],
        limits: Limits = Limits(),
        failure_markers: Sequence[str] = (),
    ) -> ExecResult:
        """Run `argv` with `files` (name -> text) placed read-only in the input directory.

        `{input}` in argv stands for the input directory; the working directory is empty and writable.
        A run passes when it exits 0 and its output contains none of `failure_markers` (for runtimes such as
        mono that exit 0 after a failed assertion).
        """
        with tempfile.TemporaryDirectory(prefix="lcl-sandbox-") as host_dir:
            host = Path(host_dir)
            input_dir = _write_inputs(host / "input", files)
            with open(host / "output", "wb") as output:
                start = time.monotonic()
                if self.isolation.mode == "bwrap":
                    code, timed_out = _run_bwrap(self._bwrap, self._mounts, argv, input_dir, output, limits)
                else:
                    code, timed_out = _run_weak(argv, input_dir, host / "work", output, limits)
                duration = time.monotonic() - start
            text = _tail(host / "output", limits.output_bytes)
        return _result(code, timed_out, duration, text, failure_markers)


def _choose_isolation(bwrap: str | None, allow_weak: bool) -> Isolation:
    problem = _probe_bwrap(bwrap) if bwrap else f"bwrap is not installed; {INSTALL_HINT}"
    if problem is None:
        who = "a throwaway unprivileged uid" if os.geteuid() == 0 else "a user namespace"
        return Isolation("bwrap", f"bubblewrap ({bwrap}): pid/net/ipc/uts namespaces, read-only system, {who}")
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
def _warn_weak_once(problem: str) -> None:
    log.warning("WEAK SANDBOX (%s): programs run with rlimits only; they can read files and use the network", problem)


@cache
def _probe_bwrap(bwrap: str) -> str | None:
    """None if a trivial program runs through the full bwrap + prlimit (+ setpriv) chain, else what went wrong."""
    with tempfile.TemporaryDirectory() as host:
        input_dir = _write_inputs(Path(host) / "input", {})
        command = _bwrap_command(bwrap, (), ["/bin/sh", "-c", "exit 0"], input_dir, Limits(), info_fd=None)
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=30, env={"PATH": SYSTEM_PATH})
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{bwrap} could not be started ({e})"
    if run.returncode != 0:
        return f"{bwrap} cannot set up its sandbox here (exit {run.returncode}: {run.stderr.strip()})"
    return None


def _run_bwrap(bwrap: str, mounts, argv, input_dir: Path, output, limits: Limits) -> tuple[int, bool]:
    info_read, info_write = os.pipe()
    try:
        proc = subprocess.Popen(
            _bwrap_command(bwrap, mounts, argv, input_dir, limits, info_fd=info_write),
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env={"PATH": SYSTEM_PATH}, pass_fds=(info_write,),
        )
    finally:
        os.close(info_write)
    with open(info_read, "rb") as info:
        init = _open_init(info.read())  # bwrap writes the JSON and closes the fd once the namespace exists
    if init is None:  # bwrap failed before creating its namespace: nothing else can be running
        timed_out = not _exits_within(proc.pid, limits.wall_s)
        if timed_out:
            proc.kill()
        return proc.wait(), timed_out
    try:
        timed_out = not _exits_within(proc.pid, limits.wall_s)
        if timed_out:
            _kill(init)
        code = proc.wait()
        # bwrap reports the program's exit before its init has died (of --die-with-parent); the init finishes
        # exiting only after the kernel has killed and reaped everything else in its PID namespace.
        if not _pidfd_ready(init, 5.0):
            _kill(init)
            _pidfd_ready(init, None)
        return code, timed_out
    finally:
        os.close(init)


def _open_init(info: bytes) -> int | None:
    """A pidfd for the sandbox's init (pid 1 of its PID namespace), from bwrap's --info-fd JSON."""
    try:
        return os.pidfd_open(json.loads(info)["child-pid"])
    except (ValueError, KeyError, ProcessLookupError):
        return None


def _exits_within(pid: int, seconds: float) -> bool:
    """Wait for child `pid` to exit, at most `seconds`, without reaping it (`Popen.wait(timeout)` polls with
    sleeps of up to 50 ms, more than the whole sandbox costs a short program)."""
    pidfd = os.pidfd_open(pid)
    try:
        return _pidfd_ready(pidfd, seconds)
    finally:
        os.close(pidfd)


def _pidfd_ready(pidfd: int, seconds: float | None) -> bool:
    return bool(select.select([pidfd], [], [], seconds)[0])


def _kill(pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just exited
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def _bwrap_command(bwrap: str, mounts, argv, input_dir: Path, limits: Limits, info_fd: int | None) -> list[str]:
    tmpfs_bytes = str(limits.tmpfs_mb << 20)
    args = [
        bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--hostname", "sandbox", "--die-with-parent", "--new-session",
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


def _run_weak(argv, input_dir: Path, work: Path, output, limits: Limits) -> tuple[int, bool]:
    work.mkdir()
    program = [arg.replace("{input}", str(input_dir)) for arg in argv]
    proc = subprocess.Popen(
        [*_prlimit_args(limits), *program], cwd=work, stdin=subprocess.DEVNULL, stdout=output,
        stderr=subprocess.STDOUT, env=_program_env(str(work)), start_new_session=True,
    )
    timed_out = not _exits_within(proc.pid, limits.wall_s)
    with contextlib.suppress(ProcessLookupError):  # whatever is left in its session (a process that left it survives)
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(), timed_out


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


def _tail(path: Path, n_bytes: int) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - n_bytes))
        return f.read().decode("utf-8", errors="replace")


def _signal_of(returncode: int) -> str | None:
    """Popen reports death by signal N as -N; bwrap reports its child's as exit 128 + N."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    try:
        return signal.Signals(number).name if number else None
    except ValueError:
        return None


def _result(code: int, timed_out: bool, duration: float, output: str, failure_markers) -> ExecResult:
    sig = _signal_of(code)
    if timed_out or sig == "SIGXCPU":
        status = "timeout"
    elif sig in KILL_SIGNALS:
        status = "killed"
    elif code == 0 and not any(marker in output for marker in failure_markers):
        status = "passed"
    else:
        status = "failed"
    return ExecResult(status, None if sig else code, sig, duration, output)
