"""llama.cpp Python bindings side by side: install time, speed and the features the agent needs.

    python -m benchmarks.llama_backends \\
        --backend llama-cpp-python=/work/main/.venv/bin/python \\
        --backend xllamacpp=/tmp/venv-xll/bin/python \\
        --backend llama-cpp-py-sync=/tmp/venv-sync/bin/python \\
        [--install] [--rounds 3] [--threads 1,2] --out /tmp/backends.json

Each backend runs in its own interpreter (its own venv: the bindings clash when installed together),
as a worker process started from this file, which needs nothing but the standard library and the
binding it measures. Speed: the default embedded model (Qwen2.5-Coder-1.5B Q4_K_M), one fixed
agent-like prompt (our system prompt and tool list in Qwen's chat format, ~500 tokens), greedy, a fresh
process and model per measurement, prompt cache off. Prompt tok/s = prompt tokens / time to the first
streamed token; generation tok/s = tokens after the first / the time after it. The measurements of
all backends are interleaved (round r runs them in a rotated order, for each thread count) so that a
busy machine slows them alike; ratios are against the first backend, per thread count, medians over
rounds. ``--install`` first times ``pip install`` of each backend's pip spec into a new venv with
an empty private pip cache (the global cache is left alone), then measures in those venvs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: what ``--install`` puts in each venv (the versions measured)
PIP_SPECS = {
    "llama-cpp-python": "llama-cpp-python[server]==0.3.36",
    "xllamacpp": "xllamacpp==2026.10.11549",
    "llama-cpp-py-sync": "llama-cpp-py-sync==0.11739",
}

LONG_ANSWER = (
    "Before calling any tool, explain in detail, as ten numbered steps, how you will find her last "
    "HbA1c and how it has moved since 2015."
)


# --------------------------------------------------------------------------------------------------
# Worker side: runs under the candidate's interpreter; standard library and the binding only.
# --------------------------------------------------------------------------------------------------


class _Engine:
    """One binding behind four calls: load, stream a raw prompt, chat (for features), close."""

    def __init__(self, backend: str, model: str, threads: int, n_ctx: int) -> None:
        self.backend = backend
        if backend == "llama-cpp-python":
            from llama_cpp import Llama

            self.llm = Llama(model_path=model, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                             n_batch=256, verbose=False)
        elif backend == "xllamacpp":
            import xllamacpp as xlc

            p = xlc.CommonParams()
            p.model.path = model
            p.n_ctx = n_ctx
            p.n_batch = 256
            p.n_ubatch = 256
            p.n_parallel = 1
            p.cpuparams.n_threads = threads
            p.cpuparams_batch.n_threads = threads
            p.port = 0  # any free port on 127.0.0.1: its HTTP server is the OpenAI-compatible one
            p.verbosity = -1
            p.cache_ram_mib = 0
            p.warmup = False  # the others do not warm up at load either; _measure warms all up alike
            p.fit_params = False  # as agent.models.llamacpp sets it (added after the 2026-12-02 run)
            self.llm = xlc.Server(p)
        elif backend == "llama-cpp-py-sync":
            import llama_cpp_py_sync as lps

            self.llm = lps.Llama(model, n_ctx=n_ctx, n_batch=256, n_threads=threads, n_threads_batch=threads,
                                 seed=0, verbose=False)
        else:
            raise SystemExit(f"unknown backend {backend}")

    def tokenize(self, text: str) -> int:
        """Tokens of ``text`` with special tokens parsed and no BOS added."""
        if self.backend == "llama-cpp-python":
            return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))
        if self.backend == "xllamacpp":
            import urllib.request

            body = json.dumps({"content": text, "add_special": False, "parse_special": True}).encode()
            req = urllib.request.Request(self.llm.listening_address + "/tokenize", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return len(json.loads(resp.read())["tokens"])
        return len(self.llm.tokenize(text, add_special=False, parse_special=True))

    def stream(self, prompt: str, max_tokens: int, on_piece: Any) -> tuple[int, int]:
        """Greedy completion of a raw prompt (special tokens parsed): (prompt tokens, generated tokens)."""
        if self.backend == "llama-cpp-python":
            tokens = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
            self.llm.reset()
            n = 0
            for chunk in self.llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0,
                                                    repeat_penalty=1.0, stream=True):
                text = chunk["choices"][0]["text"]
                if text:  # the closing chunk carries only the finish reason
                    on_piece(text)
                    n += 1
            return len(tokens), n
        if self.backend == "xllamacpp":
            usage: dict[str, Any] = {}

            def cb(chunk: Any) -> bool:
                chunk = json.loads(chunk) if isinstance(chunk, (str, bytes)) else chunk
                if chunk.get("usage"):
                    usage.update(chunk["usage"])
                for ch in chunk.get("choices") or []:
                    if ch.get("text"):
                        on_piece(ch["text"])
                return False

            self.llm.handle_completions({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
                                         "repeat_penalty": 1.0, "stream": True, "cache_prompt": False,
                                         "stream_options": {"include_usage": True}}, cb)
            return int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        # llama-cpp-py-sync: its public generate() tokenizes without parsing special tokens, so the chat
        # markers would become plain text; drive its documented pieces with parse_special=True instead.
        llm = self.llm
        tokens = llm.tokenize(prompt, add_special=False, parse_special=True)
        llm._clear_context_state()
        llm._configure_generation_sampler(0.0, 40, 0.95, 0.05, 1.0, 64, 0)
        n_past = llm._eval_tokens(tokens, 0)
        n = 0
        for piece in llm._generate_from_n_past(n_past, max_tokens, None):
            on_piece(piece)
            n += 1
        return len(tokens), n

    def close(self) -> None:
        if hasattr(self.llm, "close"):
            self.llm.close()
        self.llm = None


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    prompt = Path(args.prompt_file).read_text(encoding="utf-8")
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    eng = _Engine(args.worker, args.model, args.threads, args.n_ctx)
    load_s = time.perf_counter() - t0
    eng.stream("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", 2, lambda _p: None)  # warm-up
    times: list[float] = []
    pieces: list[str] = []
    start = time.perf_counter()
    n_prompt, n_gen = eng.stream(prompt, args.max_tokens,
                                 lambda p: (times.append(time.perf_counter()), pieces.append(p)))
    end = time.perf_counter()
    eng.close()
    ttft = (times[0] - start) if times else end - start
    return {
        "backend": args.worker, "threads": args.threads, "load_s": round(load_s, 2), "ttft_s": round(ttft, 3),
        "gen_s": round(end - (times[0] if times else end), 3), "gen_tokens": n_gen, "prompt_tokens": n_prompt, "text": "".join(pieces),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0],
    }


def _features(args: argparse.Namespace) -> dict[str, Any]:
    """Feature probes: chat template, JSON-schema constrained output, prefix reuse / state, server."""
    spec = json.loads(Path(args.prompt_file).read_text(encoding="utf-8"))
    messages, schema = spec["messages"], spec["schema"]
    eng = _Engine(args.worker, args.model, args.threads, args.n_ctx)
    llm, out = eng.llm, {"backend": args.worker}
    # Qwen2.5's template rendered by hand (a system turn is given, so no default one is added).
    reference_tokens = eng.tokenize(_chatml(messages))
    ask = [{"role": "system", "content": "Answer with one JSON object."},
           {"role": "user", "content": "Call search_notes to find notes that mention chest pain."}]
    if args.worker == "llama-cpp-python":
        import llama_cpp

        out["version"] = llama_cpp.__version__
        t = time.perf_counter()
        r = llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
        first = time.perf_counter() - t
        out["chat_prompt_tokens"] = r["usage"]["prompt_tokens"]
        t = time.perf_counter()
        llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
        out["prefix_reuse"] = f"same prompt again: {time.perf_counter() - t:.1f} s after {first:.1f} s (automatic)"
        r = llm.create_chat_completion(messages=ask, max_tokens=60, temperature=0.0,
                                       response_format={"type": "json_object", "schema": schema})
        out["schema_output"] = r["choices"][0]["message"]["content"]
        out["state_save_load"] = callable(getattr(llm, "save_state", None)) and callable(getattr(llm, "load_state", None))
        try:
            import llama_cpp.server.app  # noqa: F401

            out["openai_server"] = "python -m llama_cpp.server (Python, uvicorn)"
        except ImportError as exc:
            out["openai_server"] = f"missing ({exc})"
    elif args.worker == "xllamacpp":
        import urllib.request

        import xllamacpp as xlc

        out["version"] = getattr(xlc, "__version__", "?")
        r = llm.handle_chat_completions({"messages": messages, "max_tokens": 1, "temperature": 0.0})
        out["chat_prompt_tokens"] = r["usage"]["prompt_tokens"]
        r = llm.handle_chat_completions({"messages": messages, "max_tokens": 1, "temperature": 0.0})
        cached = r["usage"].get("prompt_tokens_details", {}).get("cached_tokens")
        out["prefix_reuse"] = f"same prompt again: {cached} of {r['usage']['prompt_tokens']} tokens cached (cache_prompt)"
        r = llm.handle_chat_completions({"messages": ask, "max_tokens": 60, "temperature": 0.0, "json_schema": schema})
        out["schema_output"] = r["choices"][0]["message"]["content"]
        out["state_save_load"] = "slot save/restore (POST /slots/0?action=save|restore with slot_save_path)"
        with urllib.request.urlopen(llm.listening_address + "/v1/models", timeout=10) as resp:
            out["openai_server"] = f"in-process C++ llama.cpp server, GET /v1/models -> {resp.status}"
    else:
        import llama_cpp_py_sync as lps

        out["version"] = lps.__version__
        stats: dict[str, Any] = {}
        llm.create_chat_completion(messages, max_tokens=1, temperature=0.0, on_stats=stats.update)
        out["chat_prompt_tokens"] = stats.get("input_tokens")
        r = llm.create_chat_completion(ask, max_tokens=60, temperature=0.0, repeat_penalty=1.0,
                                       response_format={"type": "json_schema", "json_schema": {"name": "call", "schema": schema}})
        out["schema_output"] = r["choices"][0]["message"]["content"]
        stats = {}
        llm.create_chat_completion(messages, max_tokens=1, temperature=0.0, cache_key="s", on_stats=stats.update)
        llm.create_chat_completion(messages, max_tokens=1, temperature=0.0, cache_key="s", on_stats=stats.update)
        out["prefix_reuse"] = f"reused_tokens={stats.get('reused_tokens')} ({stats.get('cache_status')}), with cache_key"
        out["state_save_load"] = "C API only (llama_state_* through cffi); none in the Python API"
        out["openai_server"] = "none (the wheel ships no server)"
    out["chat_template_ok"] = out["chat_prompt_tokens"] == reference_tokens
    out["reference_tokens"] = reference_tokens
    try:
        call = json.loads(out["schema_output"])
        out["schema_ok"] = call.get("tool") in schema["properties"]["tool"]["enum"] and isinstance(call.get("arguments"), dict)
    except (ValueError, AttributeError):
        out["schema_ok"] = False
    eng.close()
    return out


# --------------------------------------------------------------------------------------------------
# Orchestrator side: runs in the project's venv.
# --------------------------------------------------------------------------------------------------


def _chatml(messages: list[dict[str, str]]) -> str:
    """Qwen2.5's chat template output for system/user/assistant turns, ready for the answer."""
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def _prompt_messages() -> list[dict[str, str]]:
    from ehr_agent.agent.models.base import ChatMessage
    from ehr_agent.agent.models.common import text_mode_messages
    from benchmarks.models import SYSTEM, TOOLS

    msgs = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=LONG_ANSWER)]
    return text_mode_messages(msgs, TOOLS, gemma=False)


def _worker(python: str, backend: str, mode: str, model: str, threads: int, prompt_file: str,
            max_tokens: int, n_ctx: int, timeout: float) -> dict[str, Any]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", backend, "--mode", mode, "--model", model,
           "--threads", str(threads), "--prompt-file", prompt_file, "--max-tokens", str(max_tokens),
           "--n-ctx", str(n_ctx)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"backend": backend, "threads": threads, "error": (proc.stderr or proc.stdout)[-1500:]}
    return json.loads(lines[-1])


def install(name: str, spec: str, root: Path) -> dict[str, Any]:
    """Time ``pip install SPEC`` into a new venv with an empty private pip cache."""
    venv = root / f"venv-{name}"
    cache = root / f"pipcache-{name}"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    env = {**os.environ, "PIP_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", spec], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    return {"backend": name, "spec": spec, "seconds": round(seconds, 1), "ok": proc.returncode == 0,
            "python": str(venv / "bin" / "python"), "error": None if proc.returncode == 0 else proc.stderr[-800:]}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", default=[],
                        help="NAME=PYTHON (an interpreter with the binding); repeat. NAME: " + ", ".join(PIP_SPECS))
    parser.add_argument("--install", action="store_true", help="time a fresh install of each backend first")
    parser.add_argument("--install-root", default=None, help="where --install makes its venvs (default: a temp dir)")
    parser.add_argument("--model", default=None, help="GGUF path (default: the embedded default, assembled)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--no-features", action="store_true")
    parser.add_argument("--out", help="write everything (every measurement) as JSON here")
    # worker mode (internal)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="speed", help=argparse.SUPPRESS)
    parser.add_argument("--prompt-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.threads = int(args.threads)
        print(json.dumps(_measure(args) if args.mode == "speed" else _features(args)))
        return 0

    backends: dict[str, str] = {}
    for item in args.backend or [f"llama-cpp-python={sys.executable}"]:
        name, _, python = item.partition("=")
        if name not in PIP_SPECS:
            parser.error(f"unknown backend {name!r}; known: {', '.join(PIP_SPECS)}")
        backends[name] = python or sys.executable
    if args.model is None:
        from ehr_agent.agent.models.factory import DEFAULT_EMBEDDED
        from ehr_agent.agent.models.weights import assemble

        args.model = str(assemble(DEFAULT_EMBEDDED))
    report: dict[str, Any] = {"model": args.model, "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}

    if args.install:
        root = Path(args.install_root or tempfile.mkdtemp(prefix="llama-backends-"))
        report["install"] = []
        for name in backends:
            print(f"installing {PIP_SPECS[name]} (empty pip cache) ...", file=sys.stderr, flush=True)
            res = install(name, PIP_SPECS[name], root)
            print(f"  {res['seconds']} s ok={res['ok']}", file=sys.stderr, flush=True)
            report["install"].append(res)
            if res["ok"]:
                backends[name] = res["python"]

    messages = _prompt_messages()
    prompt = _chatml(messages)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write(prompt)
        prompt_file = fh.name

    if not args.no_features:
        schema = {"type": "object", "properties": {
            "tool": {"type": "string", "enum": ["search_notes", "get_conditions"]},
            "arguments": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
            "required": ["tool", "arguments"]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
            json.dump({"messages": messages, "schema": schema}, fh)
            feature_file = fh.name
        report["features"] = []
        for name, python in backends.items():
            print(f"features: {name} ...", file=sys.stderr, flush=True)
            report["features"].append(_worker(python, name, "features", args.model, 2, feature_file, 0, args.n_ctx, 900))

    threads = [int(t) for t in args.threads.split(",")]
    names = list(backends)
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for t in threads:
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                res = _worker(backends[name], name, "speed", args.model, t, prompt_file, args.max_tokens, args.n_ctx, 900)
                res["round"] = r
                rows.append(res)
                if "error" in res:
                    print(f"  round {r} {name} t={t}: ERROR {res['error'][-300:]}", file=sys.stderr, flush=True)
                else:
                    print(f"  round {r} {name} t={t}: ttft {res['ttft_s']}s, {res['gen_tokens']} tokens in "
                          f"{res['gen_s']}s, load avg {res['load_avg_before']:.1f}", file=sys.stderr, flush=True)
    report["speed"] = rows

    summary = []
    for t in threads:
        base: dict[str, float] = {}
        for name in names:
            ok = [x for x in rows if x.get("backend") == name and x.get("threads") == t and "error" not in x]
            p_tps = [x["prompt_tokens"] / x["ttft_s"] for x in ok if x["ttft_s"] > 0]
            g_tps = [(x["gen_tokens"] - 1) / x["gen_s"] for x in ok if x["gen_s"] > 0 and x["gen_tokens"] > 1]
            row = {"backend": name, "threads": t, "runs": len(ok), "prompt_tps": _median(p_tps),
                   "gen_tps": _median(g_tps), "load_s": _median([x["load_s"] for x in ok])}
            # Ratios of the medians against the first backend, same thread count.
            for key in ("prompt_tps", "gen_tps"):
                if base:
                    row[key + "_ratio"] = round(row[key] / base[key], 2) if base.get(key) else None
            if not base:
                base = {"prompt_tps": row["prompt_tps"], "gen_tps": row["gen_tps"]}
            summary.append(row)
    report["summary"] = summary
    n_prompt = sorted({x["prompt_tokens"] for x in rows if "error" not in x})
    report["prompt_tokens"] = n_prompt
    report["load_avg_end"] = os.getloadavg()

    la = report["load_avg_end"]
    print(f"\nmodel {Path(args.model).name}, prompt {n_prompt} tokens, max_tokens {args.max_tokens}, greedy; "
          f"{args.rounds} rounds interleaved; load average at the end {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f} "
          f"on {os.cpu_count()} CPUs\n")
    if "install" in report:
        print("| backend | pip spec | install s (empty cache) |\n|---|---|---|")
        for i in report["install"]:
            print(f"| {i['backend']} | `{i['spec']}` | {i['seconds'] if i['ok'] else 'FAILED'} |")
        print()
    if "features" in report:
        print("| backend | version | chat template (prompt tokens = reference) | JSON-schema output | prefix reuse | state save/load | OpenAI server |")
        print("|---|---|---|---|---|---|---|")
        for f in report["features"]:
            if "error" in f:
                print(f"| {f['backend']} | error: {f['error'][-120:]!r} |")
                continue
            print(f"| {f['backend']} | {f['version']} | {f['chat_template_ok']} ({f['chat_prompt_tokens']} vs "
                  f"{f['reference_tokens']}) | {f['schema_ok']} | {f['prefix_reuse']} | {f['state_save_load']} | "
                  f"{f['openai_server']} |")
        print()
    print("| backend | threads | runs | prompt tok/s (median) | ratio | gen tok/s (median) | ratio | load s |")
    print("|---|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['backend']} | {s['threads']} | {s['runs']} | {s['prompt_tps']} | {s.get('prompt_tps_ratio', 1.0)} "
              f"| {s['gen_tps']} | {s.get('gen_tps_ratio', 1.0)} | {s['load_s']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
