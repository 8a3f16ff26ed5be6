"""Code Llama's evaluation suite: HumanEval, MBPP, MultiPL-E and HumanEval infilling scored by execution in a
sandbox (`sandbox.py`), perplexity and long-context perplexity, key retrieval, and likelihood metrics.

Each `evaluate_*` / metric function takes an in-memory `Llama` and `Tokenizer` and returns a dict of metrics.
"""

from lit_codellama.evaluation.humaneval import evaluate_humaneval, humaneval_problems
from lit_codellama.evaluation.infilling import evaluate_infilling, infilling_problems
from lit_codellama.evaluation.key_retrieval import key_retrieval_accuracy
from lit_codellama.evaluation.likelihood import (
    humaneval_solution_loss,
    infilling_middle_loss,
    perplexity,
    perplexity_by_context_length,
)
from lit_codellama.evaluation.mbpp import evaluate_mbpp, mbpp_problems
from lit_codellama.evaluation.metrics import pass_at_k
from lit_codellama.evaluation.multipl_e import evaluate_multipl_e, multipl_e_problems
from lit_codellama.evaluation.sandbox import Limits, Sandbox, SandboxUnavailableError
from lit_codellama.evaluation.tasks import CodeProblem, Sample, read_samples, score_samples

__all__ = [
    "CodeProblem", "Limits", "Sample", "Sandbox", "SandboxUnavailableError", "evaluate_humaneval", "evaluate_infilling",
    "evaluate_mbpp", "evaluate_multipl_e", "humaneval_problems", "humaneval_solution_loss", "infilling_middle_loss",
    "infilling_problems", "key_retrieval_accuracy", "mbpp_problems", "multipl_e_problems", "pass_at_k", "perplexity",
    "perplexity_by_context_length", "read_samples", "score_samples",
]
