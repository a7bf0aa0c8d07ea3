"""Settings: defaults, then rag.toml, then RAG_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Settings, default_model_path, model_path


def test_load_without_file_or_env_gives_the_defaults(tmp_path):
    assert Settings.load(tmp_path / "missing.toml", env={}) == Settings()


def test_env_variables_override_defaults_with_the_right_types(tmp_path):
    settings = Settings.load(tmp_path / "missing.toml", env={
        "RAG_TOP_K": "3", "RAG_DENSE_WEIGHT": "0.7", "RAG_INDEX_DIR": "/data/idx", "RAG_MODE": "bm25",
        "RAG_MODEL_PATH": "models/mini", "RAG_LLM_URL": "http://127.0.0.1:11434/v1", "UNRELATED": "x"})
    assert settings.top_k == 3 and isinstance(settings.top_k, int)
    assert settings.dense_weight == 0.7 and isinstance(settings.dense_weight, float)
    assert settings.index_dir == Path("/data/idx")
    assert settings.model_path == Path("models/mini")
    assert settings.mode == "bm25"
    assert settings.llm_url == "http://127.0.0.1:11434/v1"
    assert settings.chunk_tokens == Settings().chunk_tokens


def test_empty_env_variable_is_ignored(tmp_path):
    assert Settings.load(tmp_path / "missing.toml", env={"RAG_TOP_K": ""}).top_k == Settings().top_k


def test_toml_rag_section_is_read_and_env_wins_over_it(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text('[rag]\ntop_k = 5\nchunk_tokens = 200\nindex_dir = "my-index"\ndense_weight = 1\n'
                    'unknown_key = "ignored"\n\n[other]\ntop_k = 99\n', encoding="utf-8")
    from_file = Settings.load(path, env={})
    assert (from_file.top_k, from_file.chunk_tokens, from_file.index_dir) == (5, 200, Path("my-index"))
    assert from_file.dense_weight == 1.0 and isinstance(from_file.dense_weight, float)
    assert Settings.load(path, env={"RAG_TOP_K": "7"}).top_k == 7


def test_rag_toml_in_the_working_folder_and_rag_config_variable_are_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("rag.toml").write_text("[rag]\ntop_k = 4\n", encoding="utf-8")
    assert Settings.load(env={}).top_k == 4
    other = tmp_path / "elsewhere.toml"
    other.write_text("[rag]\ntop_k = 6\n", encoding="utf-8")
    assert Settings.load(env={"RAG_CONFIG": str(other)}).top_k == 6


def test_invalid_number_in_env_or_broken_toml_raises_value_error(tmp_path):
    with pytest.raises(ValueError):
        Settings.load(tmp_path / "missing.toml", env={"RAG_TOP_K": "many"})
    broken = tmp_path / "broken.toml"
    broken.write_text("[rag\ntop_k = ", encoding="utf-8")
    with pytest.raises(ValueError):  # tomllib.TOMLDecodeError is a ValueError: the CLI prints one line
        Settings.load(broken, env={})


def test_replace_changes_given_fields_and_ignores_none():
    base = Settings()
    changed = base.replace(top_k=2, index_dir=None)
    assert changed.top_k == 2 and changed.index_dir == base.index_dir
    assert base.top_k == Settings().top_k  # frozen: the original is untouched


def test_default_model_path_is_the_shipped_all_minilm_folder():
    folder = default_model_path()
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert model_path(Settings()) == folder
    assert model_path(Settings(model_path=Path("x/y"))) == Path("x/y")
