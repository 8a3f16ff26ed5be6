import shutil
from pathlib import Path

import pytest
import torch

from lit_codellama import Llama, ModelConfig
from lit_codellama.checkpoint import save_model


@pytest.fixture(scope="session")
def tiny_model(tokenizer) -> Llama:
    """An untrained 2-layer Llama over the test tokenizer: it writes nonsense, which is what the pipeline must score."""
    torch.manual_seed(0)
    return Llama(ModelConfig.from_name("cl-1m", vocab_size=tokenizer.vocab_size, block_size=256)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model, tokenizer_path) -> Path:
    """`tiny_model` saved in our format, with its tokenizer.model beside it (as the CLI expects)."""
    directory = tmp_path_factory.mktemp("checkpoint")
    save_model(tiny_model, directory)
    shutil.copy(tokenizer_path, directory / "tokenizer.model")
    return directory


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, whose spinning costs several times over on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _host_processes_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:  # exited while we looked
            pass
    return pids


@pytest.fixture
def host_processes_with():
    """The pids of this machine's processes whose command line contains a marker (to find sandbox escapees)."""
    return _host_processes_with
