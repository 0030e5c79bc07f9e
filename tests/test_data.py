"""Fine-tuning data: the synthetic corpus, vocabularies, augmentation, our directory format, batching."""

from __future__ import annotations

import pytest
import torch

from mska_core import get_registry
from mska_core.config import AugmentConfig, DataConfig, SyntheticConfig, load_config
from mska_core.data.augment import rotate, select_frames
from mska_core.data.datasets import ClipDataset, load_corpus
from mska_core.data.directory import read_keypoint_file, read_split, write_split
from mska_core.data.vocab import BLANK, Vocabularies, Vocabulary
from mska_core.errors import ConfigError, DataError
from mska_core.synthetic.corpus import lexicon, make_corpus

TINY = SyntheticConfig(num_train=12, num_dev=4, num_test=4, vocab_size=8)


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(TINY)


def test_synthetic_corpus_is_deterministic_in_its_seed(corpus):
    again = make_corpus(TINY)
    assert [s.gloss for s in again.train] == [s.gloss for s in corpus.train]
    assert torch.equal(again.train[3].keypoints, corpus.train[3].keypoints)
    other = make_corpus(SyntheticConfig(num_train=12, num_dev=4, num_test=4, vocab_size=8, seed=7))
    assert [s.gloss for s in other.train] != [s.gloss for s in corpus.train]


def test_synthetic_clips_are_coco_wholebody_in_unit_range(corpus):
    for sample in corpus.train:
        assert sample.keypoints.shape[1:] == (133, 3)
        assert sample.keypoints[..., :2].abs().max() <= 1.0
        glosses = sample.gloss.split()
        assert TINY.min_glosses <= len(glosses) <= TINY.max_glosses
        assert all(a != b for a, b in zip(glosses, glosses[1:]))


def test_synthetic_translation_is_the_fixed_word_mapping(corpus):
    words = dict(lexicon(TINY.vocab_size))
    for sample in corpus.train:
        assert sample.text == " ".join(words[g] for g in sample.gloss.split())


def test_each_gloss_moves_the_hands_differently():
    # Two one-gloss clips of different glosses differ far more than the noise between signers.
    cfg = SyntheticConfig(num_train=60, num_dev=1, num_test=1, vocab_size=4, min_glosses=1, max_glosses=1)
    samples = make_corpus(cfg).train
    by_gloss = {}
    for s in samples:
        by_gloss.setdefault(s.gloss, []).append(s.keypoints[4:-4, 91:133, :2].mean(0))
    means = {g: torch.stack(v).mean(0) for g, v in by_gloss.items()}
    glosses = sorted(means)
    within = max(float((x - means[g]).norm(dim=-1).mean()) for g in glosses for x in by_gloss[g])
    between = min(float((means[a] - means[b]).norm(dim=-1).mean()) for a in glosses for b in glosses if a < b)
    assert between > within


def test_synthetic_vocabulary_larger_than_the_distinct_signs_is_refused():
    with pytest.raises(DataError, match="vocab_size"):
        make_corpus(SyntheticConfig(vocab_size=1000))


def test_vocabularies_put_the_blank_first_and_round_trip_as_plain_data(corpus):
    vocabs = Vocabularies.from_samples(corpus.train)
    assert vocabs.gloss.tokens[0] == BLANK and vocabs.blank == 0
    assert vocabs.text is None and vocabs.has_glosses  # text is the decoder's tokenizer's (mska_core.text)
    data = vocabs.to_dict()
    assert Vocabularies.from_dict(data) == vocabs
    assert all(isinstance(t, str) for t in data["gloss"]["tokens"])
    assert vocabs.gloss.index("NEVER-SEEN") == vocabs.gloss.index("<unk>")


def test_vocabulary_decode_drops_specials():
    vocab = Vocabulary.build([["A", "B"]], (BLANK, "<unk>"))
    assert vocab.decode([0, 2, 0, 3]) == ["A", "B"]


def test_evaluation_frames_are_centred_and_a_multiple_of_four():
    cfg = AugmentConfig(max_frames=16)
    index = select_frames(30, cfg, None, train=False)
    assert len(index) == 16 and index[0] == 7
    assert len(select_frames(10, cfg, None, train=False)) == 8
    assert len(select_frames(2, cfg, None, train=False)) == 4


def test_training_frames_follow_the_reference_speed_range():
    cfg = AugmentConfig(speed_min=0.5, speed_max=1.5, max_frames=400)
    lengths = set()
    for seed in range(200):
        index = select_frames(40, cfg, torch.Generator().manual_seed(seed), train=True)
        assert len(index) % 4 == 0
        assert torch.all(index[1:] >= index[:-1])  # temporal order kept
        lengths.add(len(index))
    assert min(lengths) == 20 and max(lengths) == 60


def test_training_frames_respect_the_cap():
    cfg = AugmentConfig(max_frames=32)
    for seed in range(20):
        assert len(select_frames(60, cfg, torch.Generator().manual_seed(seed), train=True)) <= 32


def test_rotation_turns_points_about_the_origin_and_keeps_confidence():
    points = torch.tensor([[[1.0, 0.0, 0.7]]])
    turned = [rotate(points, 30.0, torch.Generator().manual_seed(s)) for s in range(20)]
    moved = [p for p in turned if not torch.equal(p, points)]
    assert moved, "rotation never applied"
    for p in moved:
        assert torch.isclose(p[..., :2].norm(), torch.tensor(1.0))
        assert p[0, 0, 2] == 0.7
        assert abs(float(torch.atan2(p[0, 0, 1], p[0, 0, 0]))) <= torch.pi / 6 + 1e-6


def test_dataset_draws_repeat_per_epoch_and_change_between_epochs(corpus):
    vocabs = Vocabularies.from_samples(corpus.train)
    ds = ClipDataset(corpus.train, vocabs, AugmentConfig(rotation=10.0), train=True, seed=3)
    first = ds[5].keypoints
    assert torch.equal(ds[5].keypoints, first)
    ds.set_epoch(1)
    assert not torch.equal(ds[5].keypoints, first)


def test_directory_format_round_trips(tmp_path, corpus):
    write_split(tmp_path, "train", list(corpus.train[:3]))
    back = read_split(tmp_path, "train")
    assert [s.name for s in back] == [s.name for s in corpus.train[:3]]
    assert torch.equal(back[1].keypoints, corpus.train[1].keypoints)
    assert back[2].text == corpus.train[2].text


def test_directory_format_reads_npz_and_pixel_coordinates(tmp_path):
    import numpy as np

    (tmp_path / "dev").mkdir()
    clip = np.zeros((8, 133, 3), np.float32)
    clip[..., 0], clip[..., 1], clip[..., 2] = 105.0, 0.0, 0.5
    np.savez(tmp_path / "dev" / "a.npz", keypoints=clip)
    (tmp_path / "dev.tsv").write_text("id\tgloss\ttext\na\tX Y\tx y\n")
    samples = read_split(tmp_path, "dev", normalize=True, width=210, height=260)
    assert samples[0].keypoints[0, 0].tolist() == [0.0, 1.0, 0.5]


def test_directory_format_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "train.tsv").write_text("id\tgloss\ttext\nmissing\tA\ta\n")
    with pytest.raises(DataError, match=r"train.tsv:2: no keypoint file for 'missing'"):
        read_split(tmp_path, "train")
    (tmp_path / "dev.tsv").write_text("name,gloss\n")
    with pytest.raises(DataError, match="header"):
        read_split(tmp_path, "dev")


def test_keypoint_file_with_pickled_objects_is_refused(tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(DataError):
        read_keypoint_file(tmp_path / "x.npy")


def test_corpus_from_config_needs_a_path_for_files():
    with pytest.raises(DataError, match="data.path"):
        load_corpus(DataConfig(source="directory"), registry=get_registry())


def test_data_source_must_be_registered_and_an_unknown_one_lists_the_registered(tmp_path):
    from mska_core.config.checks import check_against_registry

    path = tmp_path / "c.toml"
    path.write_text('[data]\nsource = "videos"\n')
    config = load_config(path)  # the schema knows no registry: any name parses
    with pytest.raises(ConfigError, match=r"data.source: .*'videos'.*synthetic, mska-pickle, directory, pose"):
        check_against_registry(config, str(path), get_registry())
    with pytest.raises(DataError, match=r"data.source: .*'videos'.*registered: .*pose"):
        load_corpus(config.data, registry=get_registry())
