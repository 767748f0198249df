"""The LLM client against a real local OpenAI-compatible HTTP server (127.0.0.1)."""

from __future__ import annotations

import json
import time

import pytest

from RadGPTLogic.errors import InputError
from RadGPTLogic.llm.client import LLMConfig, LLMError, chat, chat_many, load_config

from llm_server import ScriptedLLMServer

MSG = [{"role": "user", "content": "hello"}]


def test_chat_through_the_openai_client():
    with ScriptedLLMServer(["hi there"]) as srv:
        cfg = LLMConfig(base_url=srv.url)  # no model: taken from /v1/models
        assert chat(cfg, MSG) == "hi there"
        assert srv.requests[0]["model"] == "scripted-model"
        assert srv.requests[0]["messages"] == MSG
        assert srv.requests[0]["temperature"] == 0.0


def test_retries_with_backoff_then_success():
    with ScriptedLLMServer(["ok"], fail_first=2) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=3, backoff_s=0.01)
        assert chat(cfg, MSG) == "ok"
        assert len(srv.requests) == 3


def test_gives_up_with_one_line_error():
    with ScriptedLLMServer(["never"], fail_first=10) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=1, backoff_s=0.01)
        with pytest.raises(LLMError) as err:
            chat(cfg, MSG)
        assert "no answer after 2 tries" in str(err.value) and "\n" not in str(err.value)


def test_timeout_is_enforced():
    # Not a speed goal: a 3 s reply must be cut off by the 0.2 s timeout, not waited for.
    with ScriptedLLMServer(["slow"], delay_s=3.0) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", timeout_s=0.2, max_retries=0)
        t0 = time.perf_counter()
        with pytest.raises(LLMError):
            chat(cfg, MSG)
        assert time.perf_counter() - t0 < 2.5


def test_bounded_concurrency():
    with ScriptedLLMServer(lambda body: body["messages"][0]["content"].upper(), delay_s=0.1) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m")
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(8)]
        answers = chat_many(cfg, convs, max_concurrency=2)
        assert answers == [f"Q{i}" for i in range(8)]
        assert srv.max_in_flight <= 2


def test_config_precedence(tmp_path):
    f = tmp_path / "llm.json"
    f.write_text(json.dumps({"base_url": "http://127.0.0.1:1/v1", "model": "file-model", "max_retries": 5}))
    env = {"RADGPT_LLM_MODEL": "env-model"}
    cfg = load_config(config_file=f, env=env)
    assert cfg.base_url == "http://127.0.0.1:1/v1" and cfg.model == "env-model" and cfg.max_retries == 5
    cfg = load_config(model="arg-model", config_file=f, env=env)
    assert cfg.model == "arg-model"
    assert load_config(env={"RADGPT_LLM_CONFIG": str(tmp_path / "none.json")}) is None  # LLM off
    with pytest.raises(InputError):
        load_config(config_file=tmp_path / "missing.json", env={})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InputError):
        load_config(config_file=bad, env={})
