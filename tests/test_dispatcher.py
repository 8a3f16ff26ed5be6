"""`python -m lit_codellama`: the dispatcher turns a user mistake into one line naming the file, not a traceback."""

import subprocess
import sys

from lit_codellama.cli import main


def test_bad_input_prints_one_clear_line_and_exits_2(tmp_path, capsys):
    missing = tmp_path / "no-such-checkpoint"
    assert main(["generate", "--checkpoint", str(missing), "--prompt", "def f():"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_unknown_command_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "lit_codellama", "trian"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown command 'trian'" in result.stderr and "fit" in result.stderr
