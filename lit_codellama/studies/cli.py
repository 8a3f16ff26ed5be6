"""Command line of a study: `python ablations/<study>.py [--preset P] [--seeds N] [--out DIR] [--threads N] [--quiet]`.

`python -m lit_codellama study <name|path.py> ...` runs a study script's `STUDY` the same way (`main`): a name is a
script in `./ablations/`. Like `fit`, a study resolves relative paths (its `--out`, the training configs and recipes
of its presets) against the current directory, normally a checkout's root; results go to
`./ablations/results/<study>/` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path

import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_codellama.arguments import ArgumentParser, output_dir, positive_int
from lit_codellama.errors import ConfigError, LitCodeLlamaError
from lit_codellama.studies.runner import RESULTS_DIR, Plan, describe, execute
from lit_codellama.studies.study import Study
from lit_codellama.training.callbacks import SIGTERM_EXIT_STATUS

STUDIES_DIR = Path("ablations")  # where `study <name>` finds `<name>.py`, under the current directory


def run_cli(study: Study, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse the study options and run it; a user mistake ends with one clear message and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(study, prog).parse_args(argv)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(args.threads or threads)
        plan = Plan.make(study, args.preset, args.seeds, args.out)
        if args.dry_run:
            print(describe(plan))
        else:
            execute(plan, progress=not args.quiet)
    except LitCodeLlamaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SIGTERMException as stop:  # training checkpointed; finished runs are kept
        print(_stopped("by SIGTERM", prog, argv), file=sys.stderr)
        return stop.code or SIGTERM_EXIT_STATUS
    except KeyboardInterrupt:  # finished runs are kept; the interrupted one resumes from its last checkpoint
        print(_stopped("by Ctrl-C", prog, argv), file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)  # run_cli may be called in-process (tests, notebooks)
    return 0


def _stopped(how: str, prog: str | None, argv: list[str]) -> str:
    command = prog or f"python {shlex.quote(sys.argv[0])}"
    return f"\nstudy stopped {how}; resume with: {command} {shlex.join(argv)}".rstrip()


def main(argv: list[str] | None = None) -> int:
    """`study <name or path to a study script> [options]`: the script's `STUDY` with `run_cli`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        scripts = sorted(p.stem for p in STUDIES_DIR.glob("*.py"))
        print(
            "usage: python -m lit_codellama study <name|path.py> [--preset P] [--seeds N] [--out DIR] [--threads N]"
            " [--dry-run]\n\n"
            f"studies in {STUDIES_DIR.absolute()}: {', '.join(scripts) or 'none (run from a checkout)'}\n"
            "Run `python -m lit_codellama study <name> --help` for a study's presets."
        )
        return 0
    try:
        study = load_study(argv[0])
    except LitCodeLlamaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run_cli(study, argv[1:], prog=f"python -m lit_codellama study {argv[0]}")


def load_study(name_or_path: str) -> Study:
    path = Path(name_or_path)
    if not path.suffix:
        path = STUDIES_DIR / f"{name_or_path}.py"
    if not path.is_file():
        raise ConfigError(
            f"no study script {path.absolute()}; pass a name from ./{STUDIES_DIR} (run from a checkout's root) "
            "or a path to a .py file"
        )
    spec = importlib.util.spec_from_file_location(f"_study_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ConfigError(f"{path} defines no `STUDY = Study(...)`")
    return study


def _parser(study: Study, prog: str | None) -> argparse.ArgumentParser:
    presets = "\n".join(
        f"  {name}{' (default)' if name == study.default_preset else ''}: {preset.seeds} seed(s), "
        f"{len(preset.arms)} arms. {' '.join(preset.notes.split())}"
        for name, preset in study.presets.items()
    )
    parser = ArgumentParser(
        prog=prog or f"python ablations/{study.name}.py",
        description=f"Study {study.name!r}: {study.question}",
        epilog=f"presets:\n{presets}\n\nFinished runs are skipped, so an interrupted study resumes where it stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=list(study.presets),
        default=study.default_preset,
        help="scale of the study (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="seeds per arm, 0..N-1 (default: the preset's); the summary gives mean and 95%% interval",
    )
    parser.add_argument(
        "--out",
        type=output_dir,
        default=None,
        metavar="DIR",
        help=f"results directory (default: {RESULTS_DIR / study.name} under the current directory)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="torch intra-op threads (default: torch's, one per core); on a machine busy with other "
        "jobs, 1 is often several times faster for the small models of the CPU presets",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print every run's resolved definition and exit without training"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (they show only on a terminal anyway): one line per run"
    )
    return parser
