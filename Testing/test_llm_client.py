"""The LLM client and context budget against a real local OpenAI-compatible HTTP server (127.0.0.1)."""

from __future__ import annotations

import json
import time

import pytest
from llm_server import ScriptedLLMServer, word_tokens

from RadGPTLogic.errors import InputError
from RadGPTLogic.llm.budget import DEFAULT_CONTEXT_TOKENS, Budget, TokenCounter, probe_budget
from RadGPTLogic.llm.client import LLMConfig, LLMError, Request, chat, chat_many, complete, load_config

MSG = [{"role": "user", "content": "hello"}]


def test_chat_through_the_openai_client():
    with ScriptedLLMServer(["hi there"]) as srv:
        cfg = LLMConfig(base_url=srv.url)  # no model: taken from /v1/models
        assert chat(cfg, MSG) == "hi there"
        assert srv.requests[0]["model"] == "scripted-model"
        assert srv.requests[0]["messages"] == MSG
        assert srv.requests[0]["temperature"] == 0.0


def test_the_clients_own_retries_then_success():
    with ScriptedLLMServer(["ok"], fail_first=2) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=3)
        assert chat(cfg, MSG) == "ok"
        assert len(srv.requests) == 3


def test_retry_after_is_honoured():
    # The server asks for 1.5 s; the client's own backoff would wait 0.5 s at most before the first retry.
    with ScriptedLLMServer(["ok"], fail_first=1, retry_after_ms=1500) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=1)
        t0 = time.perf_counter()
        assert chat(cfg, MSG) == "ok"
        assert time.perf_counter() - t0 >= 1.4
        assert len(srv.requests) == 2


def test_gives_up_with_one_line_error_and_no_second_loop():
    with ScriptedLLMServer(["never"], fail_first=10) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=1)
        with pytest.raises(LLMError) as err:
            chat(cfg, MSG)
        assert err.value.kind == "server_error" and "HTTP 500" in str(err.value) and "\n" not in str(err.value)
        assert len(srv.requests) == 2  # one try + one retry of the client, nothing more


def test_client_errors_are_not_retried():
    with ScriptedLLMServer(["never"], fail_first=10, fail_status=403) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=3)
        with pytest.raises(LLMError) as err:
            chat(cfg, MSG)
        assert err.value.kind == "http_error" and len(srv.requests) == 1


def test_context_overflow_names_the_servers_window():
    with ScriptedLLMServer(["x"], context_tokens=60) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m")
        with pytest.raises(LLMError) as err:
            complete(cfg, Request([{"role": "user", "content": "word " * 80}], max_tokens=10))
        assert err.value.kind == "context_overflow" and err.value.context_tokens == 60
        assert len(srv.requests) == 1  # a 400 is not retried


def test_max_tokens_is_sent_and_a_cut_answer_says_so():
    with ScriptedLLMServer(["one two three four five six"]) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m")
        answer = complete(cfg, Request(MSG, max_tokens=3))
        assert srv.requests[0]["max_tokens"] == 3
        assert answer.truncated and answer.text == "one two three" and answer.completion_tokens == 3
        whole = complete(cfg, Request(MSG, max_tokens=50))
        assert not whole.truncated and whole.finish_reason == "stop"


def test_the_timeout_follows_from_max_tokens():
    # A 1 s answer: cut off by a 0.3 s timeout without max_tokens (and not asked again: max_retries 0),
    # waited for when max_tokens = 10 at 5 tokens/s adds 2 s.
    with ScriptedLLMServer(["slow"], delay_s=1.0) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", timeout_s=0.3, max_retries=0, min_tokens_per_s=5.0)
        assert cfg.request_timeout_s(10) == pytest.approx(2.3)
        with pytest.raises(LLMError) as err:
            complete(cfg, Request(MSG))
        assert err.value.kind == "timeout"
        assert complete(cfg, Request(MSG, max_tokens=10)).text == "slow"
        assert len(srv.requests) == 2


def test_empty_answer_is_an_error():
    with ScriptedLLMServer(["   "]) as srv:
        with pytest.raises(LLMError) as err:
            chat(LLMConfig(base_url=srv.url, model="m"), MSG)
        assert err.value.kind == "empty_answer"


def test_bounded_concurrency():
    with ScriptedLLMServer(lambda body: body["messages"][0]["content"].upper(), delay_s=0.1) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m")
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(8)]
        answers = chat_many(cfg, convs, max_concurrency=2, max_tokens=20)
        assert answers == [f"Q{i}" for i in range(8)]
        assert srv.max_in_flight <= 2
        assert all(r["max_tokens"] == 20 for r in srv.requests)


def test_config_precedence(tmp_path):
    f = tmp_path / "llm.json"
    f.write_text(json.dumps({"base_url": "http://127.0.0.1:1/v1", "model": "file-model", "max_retries": 5,
                             "context_tokens": 4096}))
    env = {"RADGPT_LLM_MODEL": "env-model"}
    cfg = load_config(config_file=f, env=env)
    assert cfg.base_url == "http://127.0.0.1:1/v1" and cfg.model == "env-model" and cfg.max_retries == 5
    assert cfg.context_tokens == 4096
    cfg = load_config(model="arg-model", config_file=f, env={**env, "RADGPT_LLM_CONTEXT_TOKENS": "2048"})
    assert cfg.model == "arg-model" and cfg.context_tokens == 2048
    assert load_config(env={"RADGPT_LLM_CONFIG": str(tmp_path / "none.json")}) is None  # LLM off
    with pytest.raises(InputError):
        load_config(config_file=tmp_path / "missing.json", env={})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InputError):
        load_config(config_file=bad, env={})
    f.write_text(json.dumps({"base_url": "http://127.0.0.1:1/v1", "context_tokens": "many"}))
    with pytest.raises(InputError, match="not a number"):
        load_config(config_file=f, env={})


# --- context budget -----------------------------------------------------------------------------


def test_window_and_counter_from_the_server():
    with ScriptedLLMServer(["x"], context_tokens=2048, report_context=True, tokenize=True) as srv:
        budget = probe_budget(LLMConfig(base_url=srv.url, model=srv.model))
        assert (budget.context_tokens, budget.source, budget.counter.kind) == (2048, "server", "server")
        text = "A 3.0 x 2.1 cm lesion in segment 4a."
        assert budget.counter.count(text) == len(word_tokens(text))
        # a configured window larger than the server's is not believed; a smaller one is kept
        assert probe_budget(LLMConfig(base_url=srv.url, model=srv.model, context_tokens=8192)).context_tokens == 2048
        small = probe_budget(LLMConfig(base_url=srv.url, model=srv.model, context_tokens=1024))
        assert (small.context_tokens, small.source) == (1024, "config")


def test_window_and_counter_without_server_support():
    with ScriptedLLMServer(["x"], context_tokens=2048) as srv:  # reports nothing, no /tokenize
        budget = probe_budget(LLMConfig(base_url=srv.url, model=srv.model))
        assert (budget.context_tokens, budget.source, budget.counter.kind) == (DEFAULT_CONTEXT_TOKENS, "default",
                                                                                 "estimate")
        cfg = probe_budget(LLMConfig(base_url=srv.url, model=srv.model, context_tokens=3000))
        assert (cfg.context_tokens, cfg.source) == (3000, "config")
    counter = TokenCounter()
    assert counter.count("x" * 220) == 100  # 2.2 characters per token
    budget = Budget(1000, "default", counter)
    messages = [{"role": "user", "content": "x" * 440}]
    assert budget.prompt_tokens(messages) == 200 + 16 and budget.room(messages) == 1000 - 216 - 32
    assert budget.learn_window(500) and (budget.context_tokens, budget.source) == (500, "server_error")
    assert not budget.learn_window(900) and budget.context_tokens == 500
