"""Tokenizers trained on the training texts, for the models trained from scratch: WordPiece for
the text classifiers (rnn, lstm, gru, transformer), byte-level BPE for the gpt, whose generated ids
must always decode back to clean text. Both are deterministic for the same texts."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerFast

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")  # a WordPiece tokenizer's special tokens, ids 0-3
BOS, PAD = "<|endoftext|>", "<|pad|>"  # a byte-level BPE tokenizer's special tokens, ids 0-1
CJK = "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]"  # kana, CJK ideographs, hangul


def train_wordpiece(texts: Any, vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A lowercasing WordPiece tokenizer trained on `texts` (the training split), with [PAD] [UNK]
    [CLS] [SEP]; single texts become [CLS] text [SEP], pairs [CLS] a [SEP] b [SEP]. Deterministic."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    # the trainer numbers the "##x" pieces in its (hash-ordered) walk over the words, and breaks
    # ties between equally frequent merges by those numbers: fixing them first makes it deterministic
    inner = sorted({c for t in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(t))
                    for c in w[1:]})
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[*SPECIALS, *(f"##{c}" for c in inner)],
                                        show_progress=False)
    draft = Tokenizer(WordPiece(unk_token="[UNK]"))
    draft.normalizer, draft.pre_tokenizer = normalizer, pre_tokenizer
    draft.train_from_iterator(texts, trainer, length=len(texts))
    tok = Tokenizer(WordPiece(draft.get_vocab(), unk_token="[UNK]"))  # only the four specials stay special
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    tok.add_special_tokens(list(SPECIALS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_max_length=max_length)


def train_bpe(texts: Any, vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on `texts`: any text encodes without an
    unknown token and decodes back exactly. Every text starts with <|endoftext|> (the start the
    model predicts the first word from); <|pad|> pads. Deterministic for the same texts.

    Chinese, Japanese and Korean characters are each a word of their own (as BERT does): written
    without spaces, they would otherwise merge into long, rare runs of characters that a small
    data set never sees often enough to learn."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer, length=len(texts))
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B:1", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD,
                                   model_max_length=max_length)
