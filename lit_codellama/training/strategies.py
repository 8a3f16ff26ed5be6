"""DeepSpeed that also runs on CPU, so ZeRO-3 sharding is exercised by the CPU test suite.

Lightning's ``DeepSpeedStrategy`` refuses every accelerator but CUDA. DeepSpeed itself runs on
CPU (its CPU accelerator talks gloo), so three overrides suffice: skip the CUDA-only check, skip
the CUDA device-index validation, and give DeepSpeed an indexed CPU device. On CUDA the class is
exactly Lightning's strategy, so one config runs on a laptop and on a cluster.
"""

from __future__ import annotations

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """``DeepSpeedStrategy`` that also accepts ``accelerator="cpu"`` (process group: gloo)."""

    @property
    def _on_cpu(self) -> bool:
        return self.parallel_devices is not None and self.parallel_devices[0].type == "cpu"

    def setup_environment(self) -> None:
        if self._on_cpu:
            DDPStrategy.setup_environment(self)  # the grandparent's: no CUDA-only check
        else:
            super().setup_environment()

    def setup_distributed(self) -> None:
        if not self._on_cpu:
            return super().setup_distributed()
        # The parent's, minus the check that device indices are 0..n-1 (CPU devices have none).
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    def root_device(self) -> torch.device:
        device = super().root_device
        # DeepSpeed's engine reads the index as its local device; a bare "cpu" has none.
        return torch.device("cpu", self.local_rank) if device.type == "cpu" else device
