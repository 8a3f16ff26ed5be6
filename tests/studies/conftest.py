from pathlib import Path

import pytest

from lit_codellama.studies.cli import load_study, run_cli

STUDIES = ("fim_rate", "rope_base", "long_context")


@pytest.fixture(scope="session")
def run_tiny():
    """Run a study at `--preset tiny` through its command line into `out`; returns the exit status."""

    def run(name: str, out: Path) -> int:
        # One thread: the tiny models gain nothing from more, and on a busy machine threads that wait for each
        # other's cores make every step several times slower.
        return run_cli(load_study(name), ["--preset", "tiny", "--out", str(out), "--threads", "1"])

    return run


@pytest.fixture(scope="session")
def results(tmp_path_factory, run_tiny) -> dict[str, Path]:
    """Each study run once at the tiny preset (the corpus is built into a temporary cache), shared by the
    end-to-end and the notebook tests."""
    out = tmp_path_factory.mktemp("studies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIT_CODELLAMA_DATA", str(out / "corpora"))
        for name in STUDIES:
            assert run_tiny(name, out / name) == 0
    return {name: out / name for name in STUDIES}
