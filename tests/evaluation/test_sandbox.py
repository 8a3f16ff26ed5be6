"""The sandbox against hostile programs: each test is one way a model-written program could do harm."""

import ctypes
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from lit_codellama.evaluation.execution import run_program
from lit_codellama.evaluation.sandbox import (
    WEAK_ENV_VAR,
    Cancellation,
    Limits,
    MemoryCgroups,
    RunCancelled,
    Sandbox,
    SandboxUnavailableError,
)


def run(sandbox, source, **limits):
    return run_program(sandbox, source, limits=Limits(**limits) if limits else None)


def become_sleeper(marker: str, seconds: int = 120) -> str:
    """A line of a program that turns its process into a sleeping Python whose command line holds `marker`."""
    return f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep({seconds})', {marker!r}])"


def hung_program(marker: str, *, setsid: bool) -> str:
    """A program that forks a sleeper (in a session of its own with `setsid`), then sleeps as long itself."""
    child = ["os.setsid()", become_sleeper(marker)] if setsid else [become_sleeper(marker)]
    return "import os, sys, time\nif os.fork() == 0:\n" + "".join(f"    {line}\n" for line in child) + "time.sleep(120)\n"


def test_status_is_passed_failed_timeout_or_killed(sandbox):
    assert run(sandbox, "assert 1 + 1 == 2").status == "passed"
    failed = run(sandbox, "assert 1 + 1 == 3, 'arithmetic'")
    assert (failed.status, failed.returncode) == ("failed", 1)
    assert "AssertionError: arithmetic" in failed.output
    crashed = run(sandbox, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert (crashed.status, crashed.signal) == ("failed", "SIGSEGV")
    killed = run(sandbox, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert (killed.status, killed.signal) == ("killed", "SIGKILL")


def test_a_run_passes_only_with_its_own_fresh_token(sandbox):
    leaked = run(sandbox, "import os; print(os.read(0, 64)[::-1])")  # reads the token before the epilogue can
    assert leaked.status == "exited_early"
    token = eval(leaked.output)[::-1].decode().strip()
    assert len(token) == 32
    replay = run(sandbox, f"print({token!r})\nimport os\nos._exit(0)")
    assert replay.status == "exited_early"


def test_cpu_limit_stops_a_busy_loop(sandbox):
    result = run(sandbox, "while True: pass", cpu_s=1, wall_s=60)
    assert (result.status, result.signal) == ("timeout", "SIGXCPU")


def test_wall_clock_limit_stops_a_sleeping_program(sandbox):
    result = run(sandbox, "import time; time.sleep(60)", wall_s=0.5)
    assert result.status == "timeout"


def test_address_space_limit(sandbox):
    result = run(sandbox, "x = bytearray(512 << 20)", memory_mb=256)
    assert result.status == "failed" and "MemoryError" in result.output
    assert run(sandbox, "x = bytearray(64 << 20)", memory_mb=256).status == "passed"


def test_file_size_limit(sandbox):
    source = "open('big', 'wb').write(b'x' * (4 << 20))"
    result = run(sandbox, source, file_mb=1)
    assert result.status == "failed" and "File too large" in result.output


def test_private_directories_have_a_size_limit(sandbox):
    fill = "import os\nfor i in range(100):\n    open(f'{d}/f{i}', 'wb').write(b'x' * (1 << 20))\n"
    for directory in ("/work", "/tmp"):
        result = run(sandbox, fill.replace("{d}", directory), tmpfs_mb=4)
        assert result.status == "failed" and "No space left on device" in result.output, directory


def test_output_flood_is_capped_and_the_harness_keeps_only_the_tail(sandbox):
    result = run(sandbox, "import sys\nwhile True: sys.stdout.write('y' * 65536)", file_mb=2, output_bytes=1000)
    assert result.status == "failed"  # the write past the file-size limit fails (EFBIG), the program dies
    assert len(result.output) <= 1000


def test_process_limit_holds_although_the_harness_is_root(sandbox):
    fork_bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(200):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print('forked', n)\n"
    )
    result = run(sandbox, fork_bomb, n_proc=8)
    assert os.geteuid() != 0 or result.output.strip() == "forked 7"  # 8 processes in all, the program included
    assert result.output.startswith("forked") and int(result.output.split()[1]) < 8


def test_runs_unprivileged_without_capabilities(sandbox):
    source = (
        "import os\n"
        "assert os.getuid() != 0 and os.geteuid() != 0\n"
        "status = open('/proc/self/status').read()\n"
        "assert 'CapEff:\\t0000000000000000' in status, status\n"
        "assert 'NoNewPrivs:\\t1' in status, status\n"
    )
    assert run(sandbox, source).status == "passed"


def test_working_directory_is_empty_private_and_discarded(sandbox):
    write = "import os\nassert os.listdir('.') == [], os.listdir('.')\nopen('left-behind', 'w').write('x')"
    assert run(sandbox, write).status == "passed"
    assert run(sandbox, write).status == "passed"  # the next program starts empty again


def test_filesystem_outside_the_sandbox_is_read_only_or_invisible(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    source = (
        "import os, sys\n"
        f"assert not os.path.exists({str(secret)!r})\n"
        f"assert not os.path.exists({os.getcwd()!r} + '/pyproject.toml')\n"
        "assert not os.path.exists('/root/.cache')\n"
        "for target in ['/etc/evil', '/usr/evil', '/evil', sys.prefix + '/evil', '/input/evil']:\n"
        "    try:\n"
        "        open(target, 'w')\n"
        "    except OSError:\n"
        "        continue\n"
        "    raise SystemExit('could write ' + target)\n"
    )
    result = run(sandbox, source)
    assert result.status == "passed", result.output
    assert not Path("/etc/evil").exists() and not Path("/usr/evil").exists()


def test_no_network_not_even_loopback(sandbox):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    source = (
        "import socket\n"
        f"for address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=2)\n"
        "    except OSError:\n"
        "        continue\n"
        "    raise SystemExit(f'connected to {address}')\n"
    )
    result = run(sandbox, source)
    assert result.status == "passed", result.output
    server.setblocking(False)
    with pytest.raises(BlockingIOError):  # no connection is waiting in the backlog
        server.accept()
    server.close()


def test_environment_is_scrubbed(sandbox, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_secret_value")
    result = run(sandbox, "import os; print(sorted(os.environ.items()))")
    assert result.status == "passed"
    assert "secret_value" not in result.output
    assert "'PATH'" in result.output


def test_processes_that_escape_with_setsid_are_killed_at_the_end(sandbox, host_processes_with):
    marker = f"escapee-{uuid.uuid4().hex}"
    source = (
        "import os, signal, time, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"        {become_sleeper(marker)}\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"  # let the grandchild start
    )
    assert run(sandbox, source).status == "passed"
    assert host_processes_with(marker) == []


def test_processes_are_killed_when_the_program_times_out(sandbox, host_processes_with):
    marker = f"hung-{uuid.uuid4().hex}"
    assert run(sandbox, hung_program(marker, setsid=True), wall_s=1).status == "timeout"
    assert host_processes_with(marker) == []


def test_a_cancelled_run_is_killed_and_a_later_one_never_starts(sandbox, host_processes_with):
    marker = f"cancelled-{uuid.uuid4().hex}"
    source = f"import os, sys\n{become_sleeper(marker, 60)}"
    with Cancellation() as cancel:
        def cancel_once_running():
            while not host_processes_with(marker):
                time.sleep(0.05)
            cancel.set()

        threading.Thread(target=cancel_once_running, daemon=True).start()
        with pytest.raises(RunCancelled):  # instead of a timeout after 60 s
            run_program(sandbox, source, limits=Limits(wall_s=60, cpu_s=60), cancel=cancel)
        assert host_processes_with(marker) == []
        with pytest.raises(RunCancelled):
            run_program(sandbox, "print('never runs')", cancel=cancel)


def test_harness_survives_signals_aimed_at_it(sandbox):
    source = (
        "import os, signal\n"
        f"for pid in (os.getppid(), 1, -1, {os.getpid()}):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('still here')\n"
    )
    result = run(sandbox, source)
    assert result.status == "passed" and "still here" in result.output  # the program could not kill its own init
    assert run(sandbox, "pass").status == "passed"  # and the harness (this process) is alive


def test_refuses_without_isolation_unless_both_flag_and_env_allow_weak_mode(monkeypatch):
    monkeypatch.delenv(WEAK_ENV_VAR, raising=False)
    with pytest.raises(SandboxUnavailableError, match="apt-get install -y bubblewrap"):
        Sandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailableError, match=WEAK_ENV_VAR):
        Sandbox(bwrap="/nonexistent/bwrap", allow_weak=True)
    monkeypatch.setenv(WEAK_ENV_VAR, "1")
    with pytest.raises(SandboxUnavailableError):
        Sandbox(bwrap="/nonexistent/bwrap")  # the env var alone is not enough either


def test_weak_mode_still_limits_and_kills_its_session(monkeypatch, host_processes_with):
    monkeypatch.setenv(WEAK_ENV_VAR, "1")
    weak = Sandbox(bwrap="/nonexistent/bwrap", allow_weak=True)
    assert weak.isolation.mode == "weak"
    assert run(weak, "import os; assert os.listdir('.') == []").status == "passed"
    assert run(weak, "assert False").status == "failed"
    assert run(weak, "while True: pass", cpu_s=1, wall_s=30).status == "timeout"
    marker = f"weak-{uuid.uuid4().hex}"
    assert run(weak, hung_program(marker, setsid=False), wall_s=1).status == "timeout"
    assert host_processes_with(marker) == []


def test_interpreter_is_the_harness_python(sandbox):
    result = run(sandbox, "import sys; print(sys.version)")
    assert result.output.strip() == sys.version


# The kernel interfaces below are not namespaced or not bounded by the rlimits: each test is one way around them.
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
KEYCTL, ADD_KEY = {"x86_64": (250, 248), "aarch64": (219, 217)}[os.uname().machine]  # system call numbers


def syscall(*args):
    """libc's syscall() with every number passed as a long, as the kernel reads them."""
    return ctypes.CDLL(None, use_errno=True).syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))


def test_nested_user_namespaces_are_denied_so_no_tmpfs_can_be_mounted_past_the_cap(sandbox):
    source = LIBC + (
        "uid, gid = os.getuid(), os.getgid()\n"
        "if libc.unshare(0x10000000 | 0x00020000) != 0:\n"  # CLONE_NEWUSER | CLONE_NEWNS
        "    raise SystemExit('unshare: ' + os.strerror(ctypes.get_errno()))\n"
        "open('/proc/self/setgroups', 'w').write('deny')\n"
        "open('/proc/self/uid_map', 'w').write(f'0 {uid} 1')\n"  # root of the new namespace, to own files
        "open('/proc/self/gid_map', 'w').write(f'0 {gid} 1')\n"
        "if libc.mount(b'none', b'/tmp', b'tmpfs', 0, b'size=1g') != 0:\n"
        "    raise SystemExit('mount: ' + os.strerror(ctypes.get_errno()))\n"
        "for i in range(16):\n"
        "    open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 20))\n"
        "print('wrote 16 MB in a 4 MB sandbox')\n"
    )
    result = run(sandbox, source, tmpfs_mb=4)
    assert "wrote" not in result.output and "unshare: Operation not permitted" in result.output, result.output


def test_memfd_memory_is_bounded(sandbox):
    source = (
        "import os\n"
        "fds = [os.memfd_create('pinned') for _ in range(64)]\n"  # files of 8 MB each: under the file size limit
        "for fd in fds:\n"
        "    os.write(fd, b'x' * (8 << 20))\n"
        "print('pinned', sum(os.fstat(fd).st_size for fd in fds) >> 20, 'MB')\n"
    )
    result = run(sandbox, source, memory_mb=256, total_memory_mb=384)  # 512 MB in memfd pages, not in any mapping
    assert result.status in ("failed", "killed") and "pinned" not in result.output, result


def test_without_a_memory_cgroup_memfd_and_shared_memory_are_denied(monkeypatch):
    monkeypatch.setattr(MemoryCgroups, "find", staticmethod(lambda: None))
    sandbox = Sandbox()
    detail = sandbox.isolation.detail
    assert "RLIMIT_AS" in detail and "memfd_create and SysV shm are denied" in detail
    memfd = run(sandbox, "import os; os.memfd_create('pinned')")
    assert memfd.status == "failed" and "PermissionError" in memfd.output
    shm = run(sandbox, LIBC + "assert libc.shmget(0, 1 << 20, 0o1600) == -1 and ctypes.get_errno() == 1\n")  # EPERM
    assert shm.status == "passed", shm.output
    assert run(sandbox, "print('still runs')").status == "passed"


def test_the_harness_session_keyring_is_out_of_reach(sandbox):
    assert syscall(KEYCTL, 1, 0) > 0  # KEYCTL_JOIN_SESSION_KEYRING: a fresh anonymous session keyring for this process
    description, payload = f"lcl-{uuid.uuid4().hex}".encode(), b"harness secret"
    key = syscall(ADD_KEY, b"user", description, payload, len(payload), -3)  # -3: KEY_SPEC_SESSION_KEYRING
    assert key > 0, os.strerror(ctypes.get_errno())
    source = LIBC + (
        "L = ctypes.c_long\n"
        f"key = libc.syscall(L({KEYCTL}), L(10), L(-3), b'user', {description!r}, L(0))\n"  # KEYCTL_SEARCH
        "if key < 0:\n"
        "    raise SystemExit('keyctl: ' + os.strerror(ctypes.get_errno()))\n"
        "buffer = ctypes.create_string_buffer(64)\n"
        f"n = libc.syscall(L({KEYCTL}), L(11), L(key), buffer, L(64))\n"  # KEYCTL_READ
        "print('read', buffer.raw[:n])\n"
        f"libc.syscall(L({KEYCTL}), L(2), L(key), b'overwritten', L(11))\n"  # KEYCTL_UPDATE
    )
    result = run(sandbox, source)
    assert "harness secret" not in result.output and "keyctl: Operation not permitted" in result.output, result.output
    buffer = ctypes.create_string_buffer(64)
    n = syscall(KEYCTL, 11, key, buffer, 64)  # KEYCTL_READ
    assert buffer.raw[:n] == payload  # the harness's key is unchanged
