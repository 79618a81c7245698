from text_helpers import TEST_KEY, TEST_KEY_ENV
from typer.testing import CliRunner

from llmseqrec.text.cli import llm_app

runner = CliRunner()


def test_check_default_model_prints_model_speed_and_answer():
    result = runner.invoke(llm_app, ["check", "--max-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "SmolLM2-135M-Instruct" in result.output
    assert "tokens/s" in result.output and "answer:" in result.output


def test_check_openai_endpoint(smol_server, monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    args = [
        "check",
        "--backend",
        "openai",
        "--model",
        "smollm2",
        "--base-url",
        smol_server.base_url,
    ]
    result = runner.invoke(llm_app, [*args, "--api-key-env", TEST_KEY_ENV, "--max-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "model:   smollm2" in result.output and TEST_KEY not in result.output


def test_check_errors_are_one_line(tmp_path):
    result = runner.invoke(llm_app, ["check", "--model", str(tmp_path / "nope.gguf")])
    assert result.exit_code == 1 and result.output.strip().count("\n") == 0
    assert "GGUF model file not found" in result.output
    result = runner.invoke(llm_app, ["check", "--backend", "openai"])
    assert result.exit_code == 1 and "needs base_url" in result.output


def test_stats_reports_counters(smol_chat):
    smol_chat.generate(["Say hi."], max_tokens=4)
    smol_chat.generate(["Say hi."], max_tokens=4)
    result = runner.invoke(llm_app, ["stats", "--cache", str(smol_chat.cache.path)])
    assert result.exit_code == 0, result.output
    assert "1 stored answers" in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("llamacpp"))
    cells = row.split()
    assert cells[2:5] == ["1", "1", "50.0%"]  # calls, cache hits, hit rate
    missing = runner.invoke(
        llm_app, ["stats", "--cache", str(smol_chat.cache.path.with_name("none.sqlite"))]
    )
    assert missing.exit_code == 1 and "no response cache" in missing.output
