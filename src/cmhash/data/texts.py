"""Text features of the features stage: bag of words, TF-IDF (scikit-learn), Doc2Vec (gensim) or sentence-transformers.

- ``bow``: binary bag of words (1 = the token occurs in the text) over the tokens that occur in at least
  ``min_count`` texts — the construction of MIRFlickr-25K's 1386-d tag vectors (tags in >= 20 images).
- ``tfidf``: the same vocabulary, scikit-learn's TF-IDF weights (smoothed idf, rows L2-normalised).
- ``doc2vec``: paragraph vectors (gensim's Doc2Vec, PV-DBOW with word training, Lau & Baldwin 2016's settings:
  window 15, negative 5, sub-sampling 1e-5) trained on the corpus's own texts, or inferred with a model saved
  at a local path (MRL/RSHNL's Wikipedia, XMediaNet and Pascal features: Lau & Baldwin's enwiki DBOW model,
  300-d). ``pip install gensim`` (extra ``[text]``).
- ``sentence_transformers``: embeddings of a model stored at a local path (never downloaded).

Tokens are words (``\\b\\w+\\b``) or, with ``token_separator``, the pieces between separators (tags such as
``new york;sky``). The vocabulary is built from every text of the corpus: it uses no labels, so no split
leaks into another (MIRFlickr's tag list was made the same way).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TEXT_FEATURES = ("bow", "tfidf", "doc2vec", "sentence_transformers")
#: Lau & Baldwin (2016) PV-DBOW settings used when Doc2Vec is trained on the corpus (besides dim/epochs/window).
DOC2VEC_FIXED = {"dm": 0, "dbow_words": 1, "negative": 5, "sample": 1e-5, "hs": 0}


@dataclass
class TextFeatures:
    """Features of a list of texts (row i = text i), the vocabulary (bow/tfidf) and how they were made."""

    features: np.ndarray
    vocabulary: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _tokenizer(separator: str):
    def split(text: str) -> list[str]:
        return [t.strip() for t in text.split(separator) if t.strip()]

    return split


def vectorize(
    texts: Sequence[str],
    method: str = "bow",
    *,
    min_count: int = 1,
    max_features: int = 0,
    token_separator: str = "",
    lowercase: bool = True,
    where: str = "texts",
) -> TextFeatures:
    """Bag-of-words or TF-IDF matrix (float32, ``len(texts) x vocabulary``) over a thresholded vocabulary.

    A token is kept if it occurs in at least ``min_count`` texts; ``max_features > 0`` then keeps only the
    most frequent ones. The vocabulary is sorted alphabetically. ``where`` names the source in errors.
    """
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    if method not in ("bow", "tfidf"):
        raise ValueError(f"{where}: vectorize() makes 'bow' or 'tfidf', got {method!r}")
    if int(min_count) < 1:
        raise ValueError(f"{where}: min_count must be >= 1, got {min_count}")
    kwargs: dict[str, Any] = {
        "min_df": int(min_count),
        "max_features": int(max_features) or None,
        "lowercase": bool(lowercase),
        "dtype": np.float32,
    }
    if token_separator:
        kwargs.update(tokenizer=_tokenizer(token_separator), token_pattern=None)
    else:
        kwargs["token_pattern"] = r"(?u)\b\w+\b"  # keep one-character tokens (sklearn drops them by default)
    vectorizer = TfidfVectorizer(**kwargs) if method == "tfidf" else CountVectorizer(binary=True, **kwargs)
    try:
        matrix = vectorizer.fit_transform(list(texts))
    except ValueError as exc:  # sklearn: "empty vocabulary" / "After pruning, no terms remain"
        counts = CountVectorizer(binary=True, **{**kwargs, "min_df": 1, "max_features": None})
        try:
            df = np.asarray(counts.fit_transform(list(texts)).sum(axis=0)).ravel()
            most = int(df.max()) if df.size else 0
        except ValueError:
            most = 0
        raise ValueError(
            f"{where}: empty vocabulary ({exc}). With min_count = {min_count} no token is left; the most "
            f"frequent token occurs in {most} text(s). Lower folder.min_count"
            + (" or check folder.token_separator" if token_separator else "")
            + " (or fill the text column)."
        ) from None
    vocabulary = [str(t) for t in vectorizer.get_feature_names_out()]
    x = np.asarray(matrix.toarray(), dtype=np.float32)
    empty = int((x.sum(axis=1) == 0).sum())
    if empty:
        log.info("%s: %d of %d text(s) contain no vocabulary token (all-zero rows)", where, empty, len(x))
    info = {
        "text_features": method,
        "min_count": int(min_count),
        "max_features": int(max_features),
        "token_separator": token_separator,
        "lowercase": bool(lowercase),
        "vocabulary_size": len(vocabulary),
        "empty_texts": empty,
    }
    return TextFeatures(features=x, vocabulary=vocabulary, info=info)


def embed_sentences(
    texts: Sequence[str],
    model_path: str | os.PathLike,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    where: str = "texts",
) -> TextFeatures:
    """Embeddings (float32 ``len(texts) x d``) of a sentence-transformers model saved at ``model_path``."""
    path = Path(model_path) if model_path else None
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"{where}: folder.text_model = {str(model_path)!r} is not an existing folder. "
            "text_features: sentence_transformers needs a model saved locally (SentenceTransformer(...).save(path)); "
            "nothing is downloaded."
        )
    try:
        from sentence_transformers import SentenceTransformer  # optional dependency
    except ImportError:
        raise ImportError(
            "text_features: sentence_transformers needs the package: pip install sentence-transformers "
            "(or use text_features: bow | tfidf)"
        ) from None
    model = SentenceTransformer(str(path), device=str(device))
    x = model.encode(
        list(texts),
        batch_size=int(batch_size),
        convert_to_numpy=True,
        show_progress_bar=sys.stderr.isatty(),
    )
    info = {"text_features": "sentence_transformers", "text_model": str(path), "dim": int(x.shape[1])}
    return TextFeatures(features=np.asarray(x, dtype=np.float32), info=info)


def _stable_weak_vector(size: int, seed_string: str | None = None, hashfxn: Any = None) -> np.ndarray:
    """gensim's start vector of ``infer_vector``, seeded by a CRC32 of the words instead of Python's ``hash``.

    gensim seeds it with ``hash(words)``, which changes with ``PYTHONHASHSEED`` (every new interpreter), so
    inferred vectors would differ between two runs of the same config.
    """
    import zlib

    rng = np.random.Generator(np.random.SFC64(zlib.crc32((seed_string or "").encode("utf-8")) & 0xFFFFFFFF))
    return ((rng.random(size) - 0.5) / size).astype(np.float32)


def doc2vec(
    texts: Sequence[str],
    *,
    model_path: str | os.PathLike | None = None,
    dim: int = 300,
    epochs: int = 20,
    window: int = 15,
    min_count: int = 1,
    seed: int = 0,
    where: str = "texts",
) -> TextFeatures:
    """Doc2Vec vectors (float32 ``len(texts) x dim``), trained on ``texts`` or inferred with a saved model.

    Trained (``model_path`` empty): PV-DBOW with :data:`DOC2VEC_FIXED`, ``dim``-d, ``epochs`` passes,
    ``window``, words in >= ``min_count`` texts, one worker thread (gensim is deterministic only with one),
    ``seed``; row i is the trained vector of text i. Inferred: ``Doc2Vec.load(model_path)`` and
    ``infer_vector`` per text (the model's epochs), with the model's generator reset to ``seed`` and a
    hash-independent start vector, so the same texts give the same vectors in every process. Tokens:
    ``gensim.utils.simple_preprocess`` (lower case, 2-15 letters).
    """
    try:
        from gensim.models import doc2vec as d2v
        from gensim.utils import simple_preprocess
    except ImportError:
        raise ImportError(
            f"{where}: text_features doc2vec needs gensim: pip install gensim (or pip install -e '.[text]')"
        ) from None
    from unittest import mock

    tokens = [simple_preprocess(t) for t in texts]
    empty = sum(1 for t in tokens if not t)
    if model_path:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{where}: folder.text_model = {str(model_path)!r} is not a file; give a Doc2Vec model saved with "
                "gensim (model.save(path)), e.g. Lau & Baldwin's enwiki_dbow/doc2vec.bin (nothing is downloaded)"
            )
        model = d2v.Doc2Vec.load(str(path))
        model.random = np.random.RandomState(int(seed))  # gensim's Cython code draws with randint
        with mock.patch.object(d2v, "pseudorandom_weak_vector", _stable_weak_vector):
            x = np.stack([model.infer_vector(t) for t in tokens]) if tokens else np.zeros((0, model.vector_size))
        info = {"text_features": "doc2vec", "text_model": str(path), "dim": int(model.vector_size),
                "inferred": True, "seed": int(seed), "empty_texts": empty}
        return TextFeatures(features=np.asarray(x, np.float32), info=info)
    if int(min_count) < 1:
        raise ValueError(f"{where}: min_count must be >= 1, got {min_count}")
    docs = [d2v.TaggedDocument(t, [i]) for i, t in enumerate(tokens)]
    model = d2v.Doc2Vec(vector_size=int(dim), window=int(window), min_count=int(min_count), epochs=int(epochs),
                        workers=1, seed=int(seed), **DOC2VEC_FIXED)
    try:
        model.build_vocab(docs)
    except RuntimeError as exc:  # gensim: "you must first build vocabulary before training the model"
        raise ValueError(f"{where}: no word occurs in {min_count} or more texts ({exc}); lower folder.min_count") from None
    if not model.wv.index_to_key:
        raise ValueError(f"{where}: no word occurs in {min_count} or more texts; lower folder.min_count")
    model.train(docs, total_examples=len(docs), epochs=model.epochs)
    x = np.asarray(model.dv.vectors, np.float32)
    if empty:
        log.info("%s: %d of %d text(s) have no token; their vectors stay at their random start", where, empty, len(x))
    info = {"text_features": "doc2vec", "dim": int(dim), "epochs": int(epochs), "window": int(window),
            "min_count": int(min_count), "seed": int(seed), **DOC2VEC_FIXED, "inferred": False,
            "vocabulary_size": len(model.wv.index_to_key), "empty_texts": empty}
    return TextFeatures(features=x, vocabulary=[str(w) for w in model.wv.index_to_key], info=info)
