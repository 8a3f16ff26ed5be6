"""The seccomp filter every sandboxed program runs under (bwrap `--seccomp`): the system calls that reach past the
sandbox's namespaces and rlimits fail with EPERM, everything else is allowed.

The filter is compiled by libseccomp (through ctypes: its Python binding is packaged only for the system
interpreter), which also kills any system call made through another ABI (32-bit x86, x32) than the native one.
"""

from __future__ import annotations

import ctypes
import errno
import tempfile
from functools import cache

INSTALL_HINT = "install libseccomp (`apt-get install -y libseccomp2`, or your distribution's package)"
CLONE_NEWUSER = 0x10000000
DENIED = (
    # Mounts and namespaces: inside a nested user namespace a program holds every capability, so it could mount a
    # tmpfs without the size cap (and reach far more of the kernel).
    "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr",
    # The kernel keyrings are not namespaced: the session keyring would be the harness's.
    "keyctl", "add_key", "request_key",
    # Tracing, kernel programs and modules, and interfaces with a long record of kernel bugs.
    "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "memfd_secret",
)
# Memory held by a file or a segment rather than by a mapping, which RLIMIT_AS does not see: denied when no cgroup
# bounds the program's memory.
UNBOUNDED_MEMORY = ("memfd_create", "shmget")

_ALLOW = 0x7FFF0000  # SCMP_ACT_ALLOW
_CMP_MASKED_EQ = 7  # SCMP_CMP_MASKED_EQ


def _errno_action(number: int) -> int:
    return 0x00050000 | number  # SCMP_ACT_ERRNO(number)


class _ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@cache
def _libseccomp() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError as e:
        raise OSError(f"libseccomp is not installed ({e}); {INSTALL_HINT}") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


@cache
def seccomp_filter(deny_unbounded_memory: bool) -> bytes:
    """The compiled BPF program (what bwrap reads from its --seccomp fd). Raises OSError without libseccomp."""
    lib = _libseccomp()
    ctx = lib.seccomp_init(_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        def deny(name: str, number: int = errno.EPERM, *conditions: _ArgCmp) -> None:
            syscall = lib.seccomp_syscall_resolve_name(name.encode())
            if syscall < 0:  # not a system call on this architecture
                return
            rc = lib.seccomp_rule_add_array(ctx, _errno_action(number), syscall, len(conditions),
                                            (_ArgCmp * len(conditions))(*conditions) if conditions else None)
            if rc != 0:
                raise OSError(-rc, f"seccomp_rule_add({name}) failed: {errno.errorcode.get(-rc, rc)}")

        for name in DENIED + (UNBOUNDED_MEMORY if deny_unbounded_memory else ()):
            deny(name)
        new_user_namespace = _ArgCmp(0, _CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)  # flags & CLONE_NEWUSER
        deny("unshare", errno.EPERM, new_user_namespace)
        deny("clone", errno.EPERM, new_user_namespace)
        # clone3 passes its flags in memory, out of a filter's sight: ENOSYS makes the C library fall back to clone.
        deny("clone3", errno.ENOSYS)
        with tempfile.TemporaryFile() as out:
            rc = lib.seccomp_export_bpf(ctx, out.fileno())
            if rc != 0:
                raise OSError(-rc, "seccomp_export_bpf failed")
            out.seek(0)
            return out.read()
    finally:
        lib.seccomp_release(ctx)
