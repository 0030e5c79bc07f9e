"""Translation that learns: CTC compression of the decoder's memory, unit-size embeddings and positions,
a memory whose entries see their neighbours, and a decoder that learns a compositional gloss-to-text
mapping from few examples."""

from __future__ import annotations

import math

import pytest
import torch

from mska_core.synthetic.corpus import LEXICON
from mska_core.text.builtin import TranslationDecoder, ctc_compress


def one_hot_logits(path: list[int], vocab: int = 6) -> torch.Tensor:
    logits = torch.full((len(path), vocab), -5.0)
    logits[torch.arange(len(path)), torch.tensor(path)] = 5.0
    return logits


def test_ctc_compression_averages_each_recognised_gloss_and_drops_blanks():
    features = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 2)[None]  # frame t has features t
    logits = one_hot_logits([0, 3, 3, 0, 3, 5, 5, 0])[None]
    memory, lengths = ctc_compress(features, logits, torch.tensor([8]))
    assert lengths.tolist() == [3]  # 3 3 | blank | 3 | 5 5: a repeat after a blank is a new gloss
    torch.testing.assert_close(memory[0, :, 0], torch.tensor([1.5, 4.0, 5.5]))


def test_ctc_compression_ignores_padding_and_keeps_a_clip_with_no_gloss_whole():
    features = torch.randn(2, 6, 4)
    logits = torch.stack([one_hot_logits([2, 2, 0, 4, 1, 1]), one_hot_logits([0, 0, 0, 0, 3, 3])])
    memory, lengths = ctc_compress(features, logits, torch.tensor([4, 4]))
    assert lengths.tolist() == [2, 1]
    torch.testing.assert_close(memory[0, 0], features[0, :2].mean(0))
    torch.testing.assert_close(memory[0, 1], features[0, 3])
    torch.testing.assert_close(memory[1, 0], features[1, :4].mean(0))  # all blank: the mean of its frames


def test_ctc_compression_passes_gradients_to_the_features():
    features = torch.randn(1, 5, 3, requires_grad=True)
    memory, _ = ctc_compress(features, one_hot_logits([1, 1, 0, 2, 0])[None], torch.tensor([5]))
    memory.sum().backward()
    torch.testing.assert_close(features.grad[0, :, 0], torch.tensor([0.5, 0.5, 0.0, 1.0, 0.0]))


def test_token_embeddings_and_positions_start_at_one_scale():
    decoder = TranslationDecoder(200, 64, layers=1, heads=2, ff=64)
    with torch.no_grad():
        embedded = decoder.embed(torch.arange(1, 200)) * math.sqrt(decoder.dim)
        assert 0.8 < float(embedded.std()) < 1.2
        assert 0.5 < float(decoder.positions[:40].std()) < 1.0
        assert float(decoder.embed.weight[0].abs().sum()) == 0.0  # <pad>


def test_each_memory_entry_sees_its_neighbours_and_never_the_padding():
    torch.manual_seed(0)
    decoder = TranslationDecoder(10, 8, layers=1, heads=2, ff=16, context=3)
    memory, lengths = torch.randn(2, 6, 8), torch.tensor([6, 4])
    read = decoder.read(memory, lengths)
    changed = memory.clone()
    changed[0, 2] += 1.0
    moved = (decoder.read(changed, lengths) - read)[0].abs().sum(-1)
    assert moved[1:4].min() > 0 and moved[[0, 4, 5]].max() == 0  # entry 2 reaches 1 and 3 only
    padded = memory.clone()
    padded[1, 4:] = 100.0  # what lies past a clip's length changes nothing it reads
    torch.testing.assert_close(decoder.read(padded, lengths)[1, :4], read[1, :4])


def test_a_context_of_one_reads_the_memory_as_it_is():
    decoder = TranslationDecoder(10, 8, layers=1, heads=2, ff=16, context=1)
    memory = torch.randn(1, 5, 8)
    assert decoder.context is None
    torch.testing.assert_close(decoder.read(memory, torch.tensor([5])) - memory,
                               decoder.read(torch.zeros_like(memory), torch.tensor([5])))


@pytest.mark.parametrize("context", [0, 2, -1])
def test_the_memory_context_must_be_an_odd_width(context):
    from mska_core.errors import ConfigError
    from mska_core.text.builtin import BuiltinOptions

    with pytest.raises(ConfigError, match="losses.translation.context"):
        BuiltinOptions.from_options({"context": context})
    with pytest.raises(ValueError, match="context"):
        TranslationDecoder(10, 8, layers=1, heads=2, ff=16, context=context)


# The synthetic corpus's own lexicon: glosses translate to fixed phrases of one to three words that
# share words ("in the north", "in the south", "in the morning").
PHRASES = [words for _, words in LEXICON[:12]]


def sentences(count: int, generator: torch.Generator) -> list[list[int]]:
    """Sentences of 2 to 5 glosses, no gloss twice in a row (as the synthetic corpus makes them)."""
    out = []
    for _ in range(count):
        length = int(torch.randint(2, 6, (1,), generator=generator))
        sentence: list[int] = []
        while len(sentence) < length:
            gloss = int(torch.randint(len(PHRASES), (1,), generator=generator))
            if not sentence or gloss != sentence[-1]:
                sentence.append(gloss)
        out.append(sentence)
    return out


@pytest.mark.slow
def test_the_decoder_learns_unseen_compositions_of_glosses_in_150_steps():
    """On ideal memory (a noisy vector per gloss), 150 steps teach the decoder to translate gloss
    sequences it never saw. BLEU-4 on this seed: 82.6; 70.5 with the memory context skipped in
    ``read``; 54.1 with token embeddings drawn at N(0, 1) before the sqrt(width) scaling."""
    from mska_core.evaluation.metrics import bleu_scores

    torch.manual_seed(0)
    words = sorted({w for p in PHRASES for w in p.split()})
    vocab = ["<pad>", "<bos>", "<eos>", *words]
    index = {w: i for i, w in enumerate(vocab)}
    dim = 32
    gloss_vectors = torch.randn(len(PHRASES), dim)

    def batch(glosses: list[list[int]], noise: float = 0.0):
        width = max(map(len, glosses))
        memory = torch.zeros(len(glosses), width, dim)
        for i, g in enumerate(glosses):
            memory[i, : len(g)] = gloss_vectors[g] + noise * torch.randn(len(g), dim)
        texts = [[index[w] for g in gl for w in PHRASES[g].split()] for gl in glosses]
        steps = max(map(len, texts)) + 1
        inp = torch.zeros(len(texts), steps, dtype=torch.long)
        tgt = torch.zeros(len(texts), steps, dtype=torch.long)
        for i, t in enumerate(texts):
            inp[i, 0], inp[i, 1 : len(t) + 1] = 1, torch.tensor(t)
            tgt[i, : len(t)], tgt[i, len(t)] = torch.tensor(t), 2
        return memory, torch.tensor([len(g) for g in glosses]), inp, tgt

    generator = torch.Generator().manual_seed(1)
    train, test = sentences(200, generator), sentences(60, generator)
    seen = {tuple(s) for s in train}
    test = [s for s in test if tuple(s) not in seen]
    decoder = TranslationDecoder(len(vocab), dim, layers=2, heads=4, ff=64, dropout=0.1, context=3)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order wherever the test runs
    try:
        for _ in range(150):
            chosen = torch.randint(len(train), (16,), generator=generator).tolist()
            memory, lengths, inp, tgt = batch([train[i] for i in chosen], noise=0.3)
            loss = torch.nn.functional.cross_entropy(decoder(memory, lengths, inp).flatten(0, 1), tgt.flatten(),
                                                     ignore_index=0, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        decoder.eval()
        memory, lengths, _, _ = batch(test)
        ids = decoder.beam_search(memory, lengths, bos=1, eos=2, max_length=30, beam_size=3)
    finally:
        torch.set_num_threads(threads)
    hypotheses = [" ".join(vocab[i] for i in row) for row in ids]
    references = [" ".join(PHRASES[g] for g in s) for s in test]
    assert bleu_scores(references, hypotheses)["bleu4"] >= 75
