import json
import pytest

from lit_codellama.data.recipe import DataError
from lit_codellama.instruct.dataset import InstructSource, load_instruct

MESSAGES = {"messages": [{"role": "user", "content": "Add?"}, {"role": "assistant", "content": "a + b"}]}
ALPACA = {"instruction": "Sort the list.", "input": "[3, 1, 2]", "output": "sorted(xs)", "system": "Be terse."}


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return str(path)


def test_both_schema_forms_read_into_dialogs(tmp_path):
    dialogs = load_instruct(InstructSource(path=write(tmp_path / "d.jsonl", [MESSAGES, "", ALPACA])))
    assert dialogs[0] == MESSAGES["messages"]
    assert dialogs[1] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Sort the list.\n\n[3, 1, 2]"},
        {"role": "assistant", "content": "sorted(xs)"},
    ]


def test_columns_rename_fields_and_limit_keeps_the_first_dialogs(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5)]
    source = InstructSource(path=write(tmp_path / "d.jsonl", rows), columns={"prompt": "instruction", "completion": "output"}, limit=3)
    assert [d[0]["content"] for d in load_instruct(source)] == ["q0", "q1", "q2"]


def test_every_invalid_row_is_reported_with_its_line_number(tmp_path):
    rows = [MESSAGES, "{not json", {"text": "no schema"}, MESSAGES,
            {"messages": [{"role": "user", "content": "unanswered"}]}, {"instruction": "x", "output": ""}]
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as error:
        load_instruct(InstructSource(path=path))
    message = str(error.value)
    assert "4 invalid row(s)" in message and path in message
    for line, reason in [(2, "not valid JSON"), (3, "needs `messages`"), (5, "last message must be the assistant"), (6, "must not be empty")]:
        assert f"line {line}: " in message and reason in message
    assert "line 1:" not in message and "line 4:" not in message


def test_skip_invalid_drops_bad_rows_with_a_warning(tmp_path, caplog):
    path = write(tmp_path / "bad.jsonl", [MESSAGES, "[1, 2]", MESSAGES])
    assert len(load_instruct(InstructSource(path=path, skip_invalid=True))) == 2
    assert "line 2: expected a JSON object" in caplog.text


def test_missing_file_and_ambiguous_source_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_instruct(InstructSource(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(DataError, match="exactly one of `path`"):
        InstructSource(path="a.jsonl", hub="org/data")
    with pytest.raises(DataError, match="unknown builtin set 'wikipedia'; available: \\['stdlib'\\]"):
        InstructSource(builtin="wikipedia")


def test_hub_dataset_missing_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants
    import datasets.config

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="lit-codellama/no-such-instruct-set"):
        load_instruct(InstructSource(hub="lit-codellama/no-such-instruct-set"))
