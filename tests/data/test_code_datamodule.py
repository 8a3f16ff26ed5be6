import collections
import itertools
import random
import shutil

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lit_codellama.data import CodeDataModule, build_corpus, load_recipe
from lit_codellama.data.datamodule import planned_document_share
from lit_codellama.data.packing import TrainStream
from lit_codellama.errors import ConfigError
from lit_codellama.fim import FIMConfig

SEQ_LEN, BATCH = 32, 4


def datamodule(corpus, **kwargs) -> CodeDataModule:
    dm = CodeDataModule(str(corpus.path), **{"seq_len": SEQ_LEN, "batch_size": BATCH, "val_fraction": 0.1, **kwargs})
    dm.setup()
    return dm


def first_batches(loader, n):
    return [batch["input_ids"] for batch in itertools.islice(loader, n)]


def test_the_fim_settings_travel_to_the_stream_as_one_fim_config(corpus):
    dm = datamodule(corpus, fim_rate=0.5, spm_rate=0.25, fim_level="context")
    assert dm.train_stream().fim == dm.fim == FIMConfig(fim_rate=0.5, spm_rate=0.25, fim_level="context")


def test_batches_are_inputs_and_next_token_labels(corpus):
    dm = datamodule(corpus, fim_rate=0.5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (BATCH, SEQ_LEN)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["labels"][:, :-1], val["input_ids"][:, 1:])


def test_pretraining_continued_training_and_validation_read_disjoint_documents(corpus):
    pretraining, continued = datamodule(corpus), datamodule(corpus, stage="continued", continued_fraction=0.2)
    sha = corpus.documents["sha256"]
    train, val = {sha[i] for i in pretraining._train_docs}, {sha[i] for i in pretraining._val_docs}
    later = {sha[i] for i in continued._train_docs}
    assert train and val and later and not train & val and not later & val
    assert not later & {sha[i] for i in datamodule(corpus, continued_fraction=0.2)._train_docs}
    assert len(pretraining._train_docs) + len(pretraining._val_docs) + len(datamodule(corpus, stage="continued")._train_docs) == len(sha)
    assert continued._val_docs == pretraining._val_docs


def test_validation_is_identical_for_every_fim_setting_and_seed(corpus):
    reference = datamodule(corpus)
    for kwargs in ({"fim_rate": 0.9, "seed": 1}, {"fim_rate": 0.5, "fim_level": "context", "seed": 99}):
        other = datamodule(corpus, **kwargs)
        assert all(
            torch.equal(a["input_ids"], b["input_ids"])
            for a, b in zip(reference.val_dataloader(), other.val_dataloader(), strict=True)
        )
    assert reference.val_documents(limit=2) == datamodule(corpus, seed=5).val_documents(limit=2)


def test_same_seed_same_batches_other_seed_other_batches(corpus):
    def batches(seed):
        return first_batches(datamodule(corpus, fim_rate=0.9, seed=seed).train_dataloader(), 5)

    assert all(torch.equal(a, b) for a, b in zip(batches(1), batches(1)))
    assert not all(torch.equal(a, b) for a, b in zip(batches(1), batches(2)))


def test_two_ranks_and_their_workers_see_disjoint_pieces(corpus):
    dm = datamodule(corpus, fim_rate=0.9)
    streams = [TrainStream(dm._reader, dm._train_docs, fim=FIMConfig(0.9), rank=r, world_size=2) for r in range(2)]
    for epoch in range(2):  # shard = rank * workers + worker
        shards = [set(streams[0].shard_pieces(epoch, shard, 4)) for shard in range(4)]
        assert sum(map(len, shards)) == len(set().union(*shards)) == len(streams[0].plan)
    rank_batches = [first_batches(DataLoader(s, batch_size=BATCH, num_workers=2), 4) for s in streams]
    rows = [{tuple(row.tolist()) for batch in batches for row in batch} for batches in rank_batches]
    assert not rows[0] & rows[1]


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("token_budget", [None, 4000])
def test_stream_resumes_with_the_next_batch_from_any_step(corpus, num_workers, token_budget):
    dm = datamodule(corpus, fim_rate=0.9, token_budget=token_budget, max_document_share=0.05)

    def loader(start_batch):
        dm.batches_consumed = start_batch
        return DataLoader(dm.train_stream(), batch_size=BATCH, num_workers=num_workers)

    uninterrupted = first_batches(loader(0), 30)  # several epochs of the capped corpus
    for start in (1, 3, 7, 25):
        resumed = first_batches(loader(start), 5)
        assert all(torch.equal(a, b) for a, b in zip(uninterrupted[start : start + 5], resumed, strict=True))


def test_no_document_exceeds_its_share_of_a_run(tmp_path, tree, tokenizer_path, recipe_file):
    rng = random.Random(1)
    huge = "".join(f"value_{i} = update({rng.randrange(10**6)}, {rng.random():.6f})\n" for i in range(3000))
    (tree_copy := tmp_path / "tree").mkdir()
    shutil.copytree(tree, tree_copy, dirs_exist_ok=True)
    (tree_copy / "src" / "huge.py").write_text(huge)
    recipe = load_recipe(recipe_file(tmp_path / "r.yaml", tree_copy, tokenizer_path, max_file_bytes=10**7))
    corpus = build_corpus(recipe, tmp_path / "corpus", num_proc=1)
    budget = 20_000

    def shares(**kwargs):
        dm = CodeDataModule(str(corpus.path), seq_len=SEQ_LEN, batch_size=BATCH, val_fraction=0.1, **kwargs)
        tokens, seen = collections.Counter(), 0
        for sample in dm.train_stream().samples(0, 1, FIMConfig()):
            if seen >= budget:
                return max(tokens.values()) / budget, dm
            tokens[sample.doc] += len(sample.ids)
            seen += len(sample.ids)

    uncapped, _ = shares(max_document_share=1.0, token_budget=budget)
    assert uncapped > 0.04  # without the cap the huge file is well over 2% of the run, even shuffled
    capped, dm = shares(token_budget=budget, max_document_share=0.02)
    assert capped <= 0.02
    assert capped <= dm.largest_document_share <= 0.02


class Recorder(L.LightningModule):
    """A bigram model that keeps the batches it trained on."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.logits = torch.nn.Embedding(vocab_size, vocab_size)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["input_ids"].clone())
        logits = self.logits(batch["input_ids"])
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def fit(corpus, tmp_path, ckpt_path=None) -> list[torch.Tensor]:
    dm = CodeDataModule(str(corpus.path), seq_len=SEQ_LEN, batch_size=BATCH, fim_rate=0.9)
    model = Recorder(dm.tokenizer.vocab_size)
    trainer = quiet_trainer(max_steps=6, limit_val_batches=0,
                            callbacks=[ModelCheckpoint(tmp_path, every_n_train_steps=3, save_top_k=-1)])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen


def test_a_run_resumed_from_a_lightning_checkpoint_sees_the_batches_it_would_have_seen(corpus, tmp_path):
    uninterrupted = fit(corpus, tmp_path / "a")
    resumed = fit(corpus, tmp_path / "b", ckpt_path=tmp_path / "a" / "epoch=0-step=3.ckpt")
    assert len(uninterrupted) == 6
    assert all(torch.equal(a, b) for a, b in zip(uninterrupted[3:], resumed, strict=True))


def test_resuming_with_other_data_settings_is_a_clear_error(corpus):
    state = {**datamodule(corpus, fim_rate=0.9).state_dict(), "batches_consumed": 3}
    dm = datamodule(corpus, fim_rate=0.5)
    dm.load_state_dict(state)
    with pytest.raises(ConfigError, match=r"cannot resume.*'fim_rate': \(0.9, 0.5\)"):
        dm.train_dataloader()


def test_long_document_option_trains_only_on_long_documents(corpus):
    dm = datamodule(corpus, min_doc_tokens=200)
    lengths = corpus.documents["num_tokens"]
    assert dm._train_docs and all(lengths[i] >= 200 for i in dm._train_docs)


def test_recipe_is_built_on_first_use_then_reused(tmp_path, tree, tokenizer_path, recipe_file):
    recipe = str(recipe_file(tmp_path / "r.yaml", tree, tokenizer_path))
    dm = CodeDataModule(str(tmp_path / "built"), recipe=recipe, seq_len=SEQ_LEN, num_proc=1)
    assert dm.tokenizer.vocab_size == 1024
    stamp = (tmp_path / "built" / "corpus.json").stat().st_mtime_ns
    CodeDataModule(str(tmp_path / "built"), recipe=recipe, seq_len=SEQ_LEN).setup()
    assert (tmp_path / "built" / "corpus.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "give data_dir"),
        ({"data_dir": "x", "fim_rate": 1.5}, "fim_rate must be in"),
        ({"data_dir": "x", "fim_level": "token"}, "fim_level must be"),
    ],
)
def test_invalid_settings_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CodeDataModule(**kwargs)


def test_an_unbounded_run_is_refused(corpus, tmp_path):
    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="set Trainer\\(max_steps"):
        trainer.fit(Recorder(corpus.tokenizer.vocab_size), datamodule=CodeDataModule(str(corpus.path), seq_len=SEQ_LEN))


def test_the_run_budget_comes_from_the_trainer_or_the_config_alike(corpus):
    dm = datamodule(corpus)
    dm.trainer = L.Trainer(max_steps=7, accumulate_grad_batches=3, accelerator="cpu", logger=False)
    assert dm.run_token_budget() == 7 * 3 * BATCH * SEQ_LEN
    config = {"data": {"data_dir": str(corpus.path), "seq_len": SEQ_LEN, "batch_size": BATCH, "val_fraction": 0.1},
              "trainer": {"max_steps": 7, "accumulate_grad_batches": 3}}
    dm.max_document_share = planned_max = 0.05
    assert planned_document_share(config | {"data": {**config["data"], "max_document_share": planned_max}}) == (
        dm.largest_document_share
    )
