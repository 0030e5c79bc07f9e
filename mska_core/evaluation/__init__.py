"""Scoring a model: CTC decoding, WER per head, BLEU and ROUGE-L, the gloss clean-ups, and decoding a
split or a long clip (windows) into predictions. Used by the training loop, ``mska evaluate`` and
``mska predict``; it never imports the loops."""
