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


def test_ctrl_c_is_one_line_and_exit_130_not_a_traceback(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr("lit_codellama.generate.main", interrupted)
    assert main(["generate", "--prompt", "x"]) == 130
    assert capsys.readouterr().err == "error: generate interrupted (Ctrl-C)\n"


def test_ctrl_c_during_a_study_says_how_to_resume(monkeypatch, capsys):
    from lit_codellama.studies.cli import load_study, run_cli

    def interrupted(plan, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lit_codellama.studies.cli.execute", interrupted)
    assert run_cli(load_study("fim_rate"), ["--preset", "tiny"], prog="python ablations/fim_rate.py") == 130
    err = capsys.readouterr().err
    assert "stopped by Ctrl-C; resume with: python ablations/fim_rate.py --preset tiny" in err and "Traceback" not in err
