"""`CodeLlamaLM`: the training system around `Llama` — loss, metrics, optimizer, schedule, weight loading."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.utils.checkpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from lit_codellama.checkpoint import check_state_dict, read_checkpoint
from lit_codellama.config import resolve_model_config
from lit_codellama.errors import ConfigError
from lit_codellama.loss import IGNORE_INDEX, LanguageModelingMetrics, chunked_next_token_nats, next_token_nats
from lit_codellama.model import Llama
from lit_codellama.training.optim import cosine_with_warmup, param_groups

if TYPE_CHECKING:
    from lit_codellama.tokenizer import Tokenizer


class CodeLlamaLM(L.LightningModule):
    """Next-token training of a Llama decoder, from scratch or from a base checkpoint.

    Args:
        model_config: preset name (`cl-10m`, `codellama-7b`, ...), model-config YAML path, `{preset: ..., **overrides}`
            or a dict of every `ModelConfig` field. Long-context fine-tuning overrides `rope_theta` and `block_size`
            here; the loaded weights are unaffected, only the positions they see.
        vocab_size: overrides the config's vocabulary (the CLI links it to the data's tokenizer).
        init_checkpoint: weights to start from (anything `load_model` reads); the shapes must match
            `model_config`. Loaded into partitioned parameters under DeepSpeed ZeRO-3.
        lr, min_lr_ratio, warmup_steps: peak learning rate, final LR as a fraction of it, linear warm-up steps.
        decay_steps: where the cosine reaches `lr * min_lr_ratio`; default `trainer.max_steps`.
        betas, eps, weight_decay: AdamW's; no decay on embeddings and norms (Llama 2's eps and decay).
        activation_checkpointing: recompute each block's activations in the backward pass (long contexts).
        compile: `torch.compile` the model's forward in place (checkpoint keys are unchanged).
        loss_chunk_size: compute the training loss this many positions at a time (`chunked_next_token_nats`), so that
            the float32 logits of the whole batch never exist: for large vocabularies. None: all at once (faster on
            CPU for the small presets, where the logits are small). Not combined with `compile`.
    """

    def __init__(
        self,
        model_config: str | dict[str, Any] = "cl-10m",
        vocab_size: int | None = None,
        init_checkpoint: str | None = None,
        lr: float = 3e-4,
        min_lr_ratio: float = 1 / 30,
        warmup_steps: int = 1000,
        decay_steps: int | None = None,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-5,
        weight_decay: float = 0.1,
        activation_checkpointing: bool = False,
        compile: bool = False,
        loss_chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        checks = {
            "lr must be > 0": lr > 0,
            "min_lr_ratio must be in [0, 1]": 0 <= min_lr_ratio <= 1,
            "warmup_steps must be >= 0": warmup_steps >= 0,
            "decay_steps must be >= 1": decay_steps is None or decay_steps >= 1,
            "betas must be two numbers in [0, 1)": len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "eps must be > 0": eps > 0,
            "weight_decay must be >= 0": weight_decay >= 0,
            f"loss_chunk_size must be a positive number of positions (got {loss_chunk_size}) and is not combined "
            "with model.compile; set one of them": loss_chunk_size is None or (loss_chunk_size > 0 and not compile),
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ConfigError("model (CodeLlamaLM): " + "; ".join(problems))
        overrides = {} if vocab_size is None else {"vocab_size": vocab_size}
        self.model_config = resolve_model_config(model_config, **overrides)
        self.save_hyperparameters()
        # Checkpoints carry the resolved config, so `load_model(ckpt)` rebuilds the model without presets.
        self.hparams.model_config = self.model_config.to_dict()
        self.model: Llama | None = None
        self.val_metrics: LanguageModelingMetrics | None = None
        self._flops: dict[bool, int] = {}

    def configure_model(self) -> None:
        # Lightning calls this inside `deepspeed.zero.Init` under ZeRO-3, so parameters are born partitioned.
        if self.model is not None:
            return
        self.model = Llama(self.model_config)
        if self.hparams.init_checkpoint:
            self._load_weights(Path(self.hparams.init_checkpoint))
        elif _is_partitioned(self.model):
            # `Llama.__init__` initialised empty partitions; redo it on gathered parameters (rank 0 broadcasts).
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=0):
                self.model.init_weights()
        if self.hparams.activation_checkpointing:
            # Wrap each block's forward rather than the block (torch's CheckpointWrapper): no new module is created
            # inside zero.Init, and state-dict keys stay those of `Llama`.
            for block in self.model.layers:
                block.forward = partial(torch.utils.checkpoint.checkpoint, block.forward, use_reentrant=False)
        if self.hparams.compile:
            self.model.compile()

    def setup(self, stage: str) -> None:
        seq_len = getattr(self.trainer.datamodule, "seq_len", None)
        if seq_len is not None and seq_len > self.model_config.block_size:
            raise ConfigError(
                f"data.seq_len={seq_len} exceeds the model's block_size={self.model_config.block_size} (its training "
                "context): lower data.seq_len, or raise model.model_config.block_size (long-context fine-tuning)"
            )
        tokenizer = getattr(self.trainer.datamodule, "tokenizer", None)
        if self.hparams.init_checkpoint and tokenizer is not None:
            _check_same_tokenizer(Path(self.hparams.init_checkpoint), tokenizer)
        self.val_metrics = LanguageModelingMetrics(None if tokenizer is None else tokenizer.byte_lengths)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        labels, chunk = batch["labels"], self.hparams.loss_chunk_size
        if chunk:
            nats = chunked_next_token_nats(self.model.hidden_states(batch["input_ids"]), self.model.output, labels, chunk)
        else:
            nats = next_token_nats(self(batch["input_ids"]), labels)
        loss = nats.sum() / (labels != IGNORE_INDEX).sum()
        self._count_flops(batch["input_ids"])
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._count_flops(batch["input_ids"])
        self.val_metrics.update(self(batch["input_ids"]), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()  # already reduced across ranks
        # Identical on every rank; sync_dist only tells Lightning so (it warns about unsynced epoch-level values).
        self.log_dict({f"val/{name}": value for name, value in metrics.items()}, prog_bar=True, sync_dist=True)
        self.val_metrics.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        decay_steps = hp.decay_steps or self.trainer.max_steps
        if decay_steps <= 0:
            raise ValueError("the LR schedule needs a length: set trainer.max_steps (or model.decay_steps)")
        optimizer = self._adamw()(
            param_groups(self.model, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps
        )
        schedule = partial(
            cosine_with_warmup, warmup_steps=hp.warmup_steps, decay_steps=decay_steps, min_lr_ratio=hp.min_lr_ratio
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _adamw(self) -> Callable[..., torch.optim.Optimizer]:
        # ZeRO-Offload keeps optimizer states in CPU memory, where DeepSpeed's vectorised CPU Adam is the fast one.
        zero = (getattr(self.trainer.strategy, "config", None) or {}).get("zero_optimization", {})
        if zero.get("offload_optimizer", {}).get("device") in ("cpu", "nvme"):
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            return partial(DeepSpeedCPUAdam, adamw_mode=True)
        return partial(torch.optim.AdamW, fused=self.device.type == "cuda")

    @property
    def flops_per_batch(self) -> int | None:
        """Read by `ThroughputMonitor`: forward+backward FLOPs in training, forward only in validation."""
        return self._flops.get(self.training)

    def _count_flops(self, input_ids: torch.Tensor) -> None:
        if self.training in self._flops:
            return
        with torch.device("meta"):  # the full shapes, also when ZeRO-3 has partitioned `self.model`
            per_token = Llama(self.model_config).flops_per_token(input_ids.shape[1], backward=self.training)
        self._flops[self.training] = per_token * input_ids.numel()

    def _read_weights(self, path: Path) -> dict[str, torch.Tensor]:
        state, _ = read_checkpoint(path)
        return _grow_vocabulary(state, self.model_config.vocab_size, path)

    def _load_weights(self, path: Path) -> None:
        if not _is_partitioned(self.model):
            state = self._read_weights(path)
            check_state_dict(state, self.model, path)
            self.model.load_state_dict(state)
            return
        # ZeRO-3: only rank 0 reads the checkpoint; each parameter is gathered, filled on rank 0, re-partitioned.
        import deepspeed

        strategy, state, error = self.trainer.strategy, None, None
        if strategy.is_global_zero:
            try:
                state = self._read_weights(path)
                check_state_dict(state, _FullShapes(self.model), path)
            except Exception as e:  # noqa: BLE001 (every rank must hear of it, or the others wait forever)
                error = e
        error = strategy.broadcast(error)
        if error is not None:
            raise error
        for name, param in self.model.named_parameters():
            with deepspeed.zero.GatheredParameters([param], modifier_rank=0):
                if strategy.is_global_zero:
                    param.data.copy_(state[name])


def _check_same_tokenizer(checkpoint: Path, tokenizer: Tokenizer) -> None:
    """The data must be tokenized as the starting weights were trained. Extra pieces after the checkpoint's are
    fine (Code Llama extends Llama 2's vocabulary); a checkpoint without a `tokenizer.model` beside it is trusted."""
    # Imported here: sentencepiece is only needed when there is a tokenizer to compare (not on bare GPU boxes).
    from lit_codellama.tokenizer import Tokenizer

    saved = checkpoint / "tokenizer.model"
    if not saved.is_file():
        return
    trained_with = Tokenizer(saved)
    pieces = trained_with.processor.id_to_piece(list(range(trained_with.vocab_size)))
    if pieces != tokenizer.processor.id_to_piece(list(range(min(len(pieces), tokenizer.vocab_size)))):
        raise ConfigError(
            f"model.init_checkpoint {checkpoint} was trained with the tokenizer {saved}, but the data is tokenized by "
            f"{tokenizer.path}, whose pieces differ; build the corpus with `tokenizer: {{path: {saved}}}` in its recipe"
        )


def _grow_vocabulary(state: dict[str, torch.Tensor], vocab_size: int, source: Path) -> dict[str, torch.Tensor]:
    """Code Llama adds infilling tokens to Llama 2's vocabulary (32,000 -> 32,016): rows the base checkpoint
    lacks start at the mean of its rows. Any other vocabulary mismatch is left to the shape check."""
    for name in ("tok_embeddings.weight", "output.weight"):
        rows = state.get(name)
        if rows is not None and len(rows) < vocab_size:
            rank_zero_info(f"{source}: {name} gets {vocab_size - len(rows)} new rows, initialised to the mean row")
            state[name] = torch.cat([rows, rows.mean(0, keepdim=True).expand(vocab_size - len(rows), -1)])
    return state


def _is_partitioned(model: torch.nn.Module) -> bool:
    return hasattr(next(model.parameters()), "ds_id")


class _FullShapes:
    """The unpartitioned shapes of a ZeRO-3 model, in the form `check_state_dict` compares against."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._shapes = {name: p.ds_shape for name, p in model.named_parameters()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: torch.empty(shape, device="meta") for name, shape in self._shapes.items()}
