"""The paraphrasing family (``paraphrase``): back-translation and a T5 paraphraser (protocol §4.3).

Both generators need a generation model from the model hub (``facebook/m2m100_418M`` and
``ramsrigouthamg/t5_paraphraser``), or a local copy of it. Offline, loading fails and the family
is reported as unavailable with the loader's reason (:class:`FamilyUnavailable`); it is never
filled with substitute output. Both generators are deterministic (default generation settings
and beam search), so only the choice between their two candidates depends on the seed.

Used in the book chapter "Query variations".
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from robustir.perturb.family import FamilyUnavailable, QueryGenerator

log = logging.getLogger(__name__)

BACK_TRANSLATION_MODEL = "facebook/m2m100_418M"
PARAPHRASE_MODEL = "ramsrigouthamg/t5_paraphraser"
#: The study's generation settings for the T5 paraphraser.
PARAPHRASE_NUM_BEAMS = 4
PARAPHRASE_MAX_LENGTH = 40
GENERATION_BATCH_SIZE = 64


def _load_seq2seq(model_id: str, device: str):
    """Load a sequence-to-sequence model and tokenizer, or say why the family is unavailable."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_id).to(device).eval()
    except (OSError, ValueError, ImportError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FamilyUnavailable(
            "paraphrase",
            f"cannot load the generation model {model_id!r} ({type(error).__name__}: {detail}). "
            "It comes from the Hugging Face model hub; with HF_HUB_OFFLINE=1 or no network it "
            "is only found if it is already in the local cache, or pass a local copy's path.",
        ) from error
    return tokenizer, model


class _Seq2SeqGenerator(QueryGenerator):
    """A model-based generator: candidates are produced in batches by :meth:`prepare`.

    Args:
        model_id: Hub id or local path of the generation model.
        device: Torch device for generation.
        batch_size: Queries per ``generate`` call.
    """

    def __init__(self, model_id: str, *, device: str = "cpu",
                 batch_size: int = GENERATION_BATCH_SIZE):
        self.batch_size = batch_size
        self._outputs: dict[str, str] = {}
        self.tokenizer, self.model = _load_seq2seq(model_id, device)

    def prepare(self, texts: Sequence[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self._outputs]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            self._outputs.update(zip(batch, self.generate(batch)))

    def __call__(self, text: str, rng: random.Random) -> str:
        if text not in self._outputs:
            self.prepare([text])
        return self._outputs[text]

    def generate(self, texts: list[str]) -> list[str]:
        """One candidate per text."""
        raise NotImplementedError


class BackTranslation(_Seq2SeqGenerator):
    """English → German → English with M2M100 and its default generation settings.

    Used in the book chapter "Query variations".
    """

    name = "back_translation"

    def _translate(self, texts: list[str], source: str, target: str) -> list[str]:
        import torch

        self.tokenizer.src_lang = source
        batch = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(**batch, forced_bos_token_id=self.tokenizer.get_lang_id(target))
        return self.tokenizer.batch_decode(output, skip_special_tokens=True)

    def generate(self, texts: list[str]) -> list[str]:
        return self._translate(self._translate(texts, "en", "de"), "de", "en")


class T5Paraphrase(_Seq2SeqGenerator):
    """T5 fine-tuned on QQP: input ``"paraphrase : {q}? </s>"``, 4 beams, at most 40 tokens.

    Used in the book chapter "Query variations".
    """

    name = "t5_paraphrase"

    def generate(self, texts: list[str]) -> list[str]:
        import torch

        prompts = [f"paraphrase : {text}? </s>" for text in texts]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.model.device)
        with torch.inference_mode():
            output = self.model.generate(
                **batch, num_beams=PARAPHRASE_NUM_BEAMS, max_length=PARAPHRASE_MAX_LENGTH
            )
        return self.tokenizer.batch_decode(output, skip_special_tokens=True)


def paraphrasing_generators(
    back_translation_model: str = BACK_TRANSLATION_MODEL,
    paraphrase_model: str = PARAPHRASE_MODEL,
    *,
    device: str = "cpu",
) -> tuple[BackTranslation, T5Paraphrase]:
    """The two generators of the paraphrasing family (chapter "Query variations").

    Args:
        back_translation_model: Hub id or local path of M2M100.
        paraphrase_model: Hub id or local path of the T5 paraphraser.
        device: Torch device for generation.

    Raises:
        FamilyUnavailable: A model cannot be loaded (offline, or not in the local cache).
    """
    return (
        BackTranslation(back_translation_model, device=device),
        T5Paraphrase(paraphrase_model, device=device),
    )
