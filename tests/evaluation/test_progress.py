"""Progress bars: on a terminal they count generated samples and perplexity lengths; elsewhere they stay silent."""

import io
import sys

from tqdm.auto import tqdm

import lit_codellama.progress
from lit_codellama.evaluation.humaneval import humaneval_problems
from lit_codellama.evaluation.likelihood import perplexity_by_context_length
from lit_codellama.evaluation.tasks import generate_samples
from lit_codellama.generate import SamplingConfig
from lit_codellama.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class EveryUpdate(tqdm):
    """Draws on every update (tqdm skips those less than 0.1 s apart), so that the output holds every count."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, mininterval=0, miniters=1, **kwargs)


def on_a_terminal(monkeypatch) -> Terminal:
    """stderr as a terminal, for the rest of the test (set in the test itself: pytest's capture resets it after
    fixtures)."""
    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setenv("COLUMNS", "100")  # the width tqdm draws at, where the terminal has none
    monkeypatch.setattr(lit_codellama.progress, "tqdm", EveryUpdate)
    return stderr


def test_bars_show_only_on_a_terminal_and_when_enabled(monkeypatch):
    def shown(**kwargs) -> bool:
        with progress_bar(total=3, **kwargs) as bar:
            return not bar.disable

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file, CI
    assert not shown()
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert shown()
    assert not shown(enabled=False)  # --quiet


def test_generation_counts_samples_on_a_terminal(tiny_model, tokenizer, monkeypatch):
    terminal = on_a_terminal(monkeypatch)
    problems = humaneval_problems(limit=3)
    samples = generate_samples(tiny_model, tokenizer, problems, SamplingConfig(max_new_tokens=2), batch_size=2,
                               progress=True, desc="humaneval: generate")
    assert len(samples) == 3
    assert "humaneval: generate" in terminal.getvalue() and "3/3" in terminal.getvalue()


def test_generation_is_silent_without_progress(tiny_model, tokenizer, monkeypatch):
    terminal = on_a_terminal(monkeypatch)
    generate_samples(tiny_model, tokenizer, humaneval_problems(limit=2), SamplingConfig(max_new_tokens=2))
    assert terminal.getvalue() == ""


def test_perplexity_counts_context_lengths_on_a_terminal(tiny_model, tokenizer, stdlib_texts, monkeypatch):
    terminal = on_a_terminal(monkeypatch)
    perplexity_by_context_length(tiny_model, tokenizer, stdlib_texts[:2], [32, 64], progress=True)
    assert "perplexity" in terminal.getvalue() and "2/2" in terminal.getvalue()
