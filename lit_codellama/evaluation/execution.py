"""How each language's programs are built and run in the sandbox, and a pool that runs them in parallel.

Every program ends with its language's epilogue, which runs after the tests have returned and prints the line on
stdin: the sandbox's one-time token, without which a run does not pass (see sandbox.py). Where tests run inside a
`main` (C++, Java, C#), the epilogue's own entry point calls it. Where asserts can be switched off (Python's -O,
C++'s NDEBUG, Java without -ea, C# without DEBUG), the epilogue prints nothing unless they are on.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field


from lit_codellama.errors import LitCodeLlamaError
from lit_codellama.evaluation.sandbox import SYSTEM_PATH, Cancellation, ExecResult, Limits, Sandbox
from lit_codellama.progress import progress_bar

JAVATUPLES = "/usr/share/java/javatuples.jar"  # MultiPL-E's Java prompts import org.javatuples
# Build and run share one sandbox, so they share the wall clock; the CPU limit holds for each process (as
# MultiPL-E's 15 s per step). JIT compilers and GC threads need more threads than Python, and the JVM reserves
# address space for its heap up front, so its memory is bounded by -Xmx instead of RLIMIT_AS.
_COMPILED = dict(wall_s=30.0, cpu_s=15, n_proc=256)


@dataclass(frozen=True)
class Language:
    """A language's source file name, its build-and-run command, and what it needs installed.

    `command` runs in an empty working directory; `{input}` is the read-only directory holding `filename`.
    `requires` are executables on the system PATH or absolute file paths; `install` says how to get them.
    `epilogue` follows every program's tests and prints the token it reads from stdin.
    """

    name: str
    filename: str
    command: tuple[str, ...]
    requires: tuple[str, ...]
    install: str
    epilogue: str
    limits: Limits = field(default_factory=Limits)

    def missing_toolchain(self) -> str | None:
        """What is not installed and how to install it, or None. The sandbox mounts only /usr and /etc (and the
        Python running the harness), so tools installed elsewhere count as missing."""

        def found(requirement: str) -> bool:
            path = requirement if os.path.isabs(requirement) else shutil.which(requirement, path=SYSTEM_PATH)
            return path is not None and os.path.exists(path) and os.path.realpath(path).startswith("/usr/")

        missing = [r for r in self.requires if not found(r)]
        return f"{', '.join(missing)} not found; install with `{self.install}`" if missing else None


def _sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


# fd 0 rather than sys.stdin, which the program may have replaced.
PYTHON_EPILOGUE = """
import os as __lcl_os
try:
    assert False  # gone under python -O, and then so is the token
except AssertionError:
    __lcl_os.write(1, __lcl_os.read(0, 64))
"""
# The tests' `main` is compiled as lcl_tests_main (-Dmain=...); falling off its end without a return is harmless
# unoptimised (-O0, hence -Wno-return-type).
CPP_EPILOGUE = """
#undef main
#include <cassert>
#include <iostream>
#include <string>
int main() {
    lcl_tests_main();
    bool asserts_on = false;
    assert((asserts_on = true));
    std::string token;
    if (asserts_on && std::getline(std::cin, token)) std::cout << token << std::endl;
}
"""
JAVA_EPILOGUE = """
class LclFinish {
    public static void main(String[] args) throws Exception {
        Problem.main(args);
        boolean assertsOn = false;
        assert assertsOn = true;
        java.io.BufferedReader stdin = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        if (assertsOn) System.out.println(stdin.readLine());
    }
}
"""
# mono reports a failed Debug.Assert to the trace listeners and carries on: this listener ends the program instead.
CS_EPILOGUE = """
class LclFinish {
    class ExitOnFail : System.Diagnostics.TraceListener {
        public override void Write(string message) {}
        public override void WriteLine(string message) {}
        public override void Fail(string message, string detail) {
            System.Console.Error.WriteLine("Debug.Assert failed: " + message + " " + detail);
            System.Console.Error.WriteLine(System.Environment.StackTrace);
            System.Environment.Exit(1);
        }
    }
    static void Main(string[] args) {
        System.Diagnostics.Debug.Listeners.Clear();
        System.Diagnostics.Debug.Listeners.Add(new ExitOnFail());
        Problem.Main(args);
        bool assertsOn = false;
        System.Diagnostics.Debug.Assert(assertsOn = true);
        if (assertsOn) System.Console.WriteLine(System.Console.In.ReadLine());
    }
}
"""
PHP_EPILOGUE = "\necho fgets(STDIN);\n"
TS_EPILOGUE = '\ndeclare var require: any;\nconsole.log(require("fs").readFileSync(0, "utf8").trim());\n'
SH_EPILOGUE = '\nread -r __lcl_token && printf "%s\\n" "$__lcl_token"\n'


LANGUAGES: dict[str, Language] = {
    language.name: language
    for language in (
        # -S: programs see the standard library only, so results do not depend on what the harness has installed.
        Language("python", "main.py", (os.path.realpath(sys.executable), "-I", "-S", "{input}/main.py"), (), "",
                 PYTHON_EPILOGUE),
        Language(
            "cpp", "main.cpp",
            _sh("g++ -std=c++17 -Dmain=lcl_tests_main -Wno-return-type -o main {input}/main.cpp && exec ./main"),
            ("g++",), "apt-get install -y g++", CPP_EPILOGUE, Limits(**_COMPILED, memory_mb=4096),
        ),
        Language(
            "java", "Problem.java",
            _sh(f"javac -J-Xmx512m -encoding UTF8 -cp {JAVATUPLES} -d . {{input}}/Problem.java "
                f"&& exec java -Xmx1g -ea -cp .:{JAVATUPLES} LclFinish"),
            ("javac", "java", JAVATUPLES), "apt-get install -y default-jdk-headless libjavatuples-java",
            JAVA_EPILOGUE, Limits(**_COMPILED, memory_mb=None),
        ),
        Language("php", "main.php", ("php", "{input}/main.php"), ("php",), "apt-get install -y php-cli",
                 PHP_EPILOGUE, Limits(memory_mb=4096)),
        Language(
            "ts", "main.ts", _sh("tsc --target esnext --outDir . {input}/main.ts && exec node main.js"),
            ("tsc", "node"), "apt-get install -y node-typescript", TS_EPILOGUE, Limits(**_COMPILED, memory_mb=4096),
        ),
        Language(
            "cs", "main.cs",
            _sh("mcs -d:DEBUG -main:LclFinish -r:System.Numerics.dll -out:main.exe {input}/main.cs "
                "&& exec mono main.exe"),
            ("mcs", "mono"), "apt-get install -y mono-mcs", CS_EPILOGUE, Limits(**_COMPILED, memory_mb=4096),
        ),
        Language("sh", "main.sh", ("bash", "{input}/main.sh"), ("bash",), "apt-get install -y bash", SH_EPILOGUE),
    )
}


class ExecutionInterrupted(LitCodeLlamaError):
    """Ctrl-C while programs ran: the running ones were killed, the queued ones never started. `results` holds
    each program's result, None for those that did not finish."""

    def __init__(self, message: str, results: list[ExecResult | None]):
        super().__init__(message)
        self.results = results


def run_program(
    sandbox: Sandbox, source: str, language: str = "python", limits: Limits | None = None,
    cancel: Cancellation | None = None,
) -> ExecResult:
    """Build and run one program (its epilogue appended); `limits` replaces the language's defaults."""
    spec = LANGUAGES[language]
    return sandbox.run(spec.command, {spec.filename: source + spec.epilogue}, limits or spec.limits, cancel)


class ProgramPool:
    """Programs running in parallel (one sandbox each, `workers` at a time, default the number of cores) while the
    caller goes on, e.g. generating the next ones. `submit` waits while `max_pending` programs (never fewer than
    `workers`) are queued or running.
    Leaving the `with` block on an exception (Ctrl-C included) kills the running programs and cancels the queued
    ones within moments; a Ctrl-C in `results` raises ExecutionInterrupted."""

    def __init__(
        self, sandbox: Sandbox, language: str = "python", limits: Limits | None = None, workers: int | None = None,
        progress: bool = True, desc: str = "executing", max_pending: int | None = None,
    ):
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}; known: {sorted(LANGUAGES)}")
        self._run = functools.partial(run_program, sandbox, language=language, limits=limits)
        self._workers = workers or os.cpu_count() or 1
        self._room = threading.Semaphore(max(max_pending, self._workers)) if max_pending else None
        self._bar = progress_bar(total=0, desc=desc, leave=False, enabled=progress)
        self._submitted = 0

    def __enter__(self) -> ProgramPool:
        self._cancel = Cancellation()
        self._pool = ThreadPoolExecutor(self._workers)
        return self

    def submit(self, source: str) -> Future[ExecResult]:
        if self._room is not None:
            self._room.acquire()
        future = self._pool.submit(self._run, source, cancel=self._cancel)
        self._submitted += 1
        self._bar.total = self._submitted
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: Future) -> None:
        self._bar.update()
        if self._room is not None:
            self._room.release()

    def results(self, futures: Sequence[Future[ExecResult]]) -> list[ExecResult]:
        """The futures' results, in order."""
        try:
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            self._stop()
        results = [f.result() if f.done() and not f.cancelled() and f.exception() is None else None for f in futures]
        finished = sum(r is not None for r in results)
        raise ExecutionInterrupted(f"interrupted: {finished} of {len(futures)} programs had finished; the running "
                                   "ones were killed and the rest cancelled", results)

    def _stop(self) -> None:
        self._cancel.set()
        self._pool.shutdown(cancel_futures=True)  # the running ones return (or raise RunCancelled) at once

    def __exit__(self, error_type, *_) -> None:
        if error_type is None:
            self._pool.shutdown()
        else:  # before the pool's own exit, which would wait for the whole queue
            self._stop()
        self._bar.close()
        self._cancel.__exit__()


def run_programs(
    sandbox: Sandbox,
    sources: Sequence[str],
    language: str = "python",
    limits: Limits | None = None,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "executing",
) -> list[ExecResult]:
    """Run programs in parallel (one sandbox each), in order; `workers` defaults to the number of cores.
    On Ctrl-C, kills the running programs, cancels the rest and raises ExecutionInterrupted within moments."""
    with ProgramPool(sandbox, language, limits, workers, progress, desc) as pool:
        return pool.results([pool.submit(source) for source in sources])
