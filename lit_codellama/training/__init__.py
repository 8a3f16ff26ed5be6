"""Training: the LightningModule, the CPU-capable DeepSpeed strategy, run callbacks and the `fit` CLI."""

from lit_codellama.training.cli import CodeLlamaCLI, train
from lit_codellama.training.module import CodeLlamaLM
from lit_codellama.training.strategies import CPUDeepSpeedStrategy

__all__ = ["CPUDeepSpeedStrategy", "CodeLlamaCLI", "CodeLlamaLM", "train"]
