"""The embedded default: synthetic signers, glosses, translations, and rendered face and hand crops.

Nothing here reads real data; it lets every command run with no download.

- :mod:`mska_core.synthetic.corpus`: the seeded corpus of keypoint clips (``[data] source =
  "synthetic"``) and the crops rendered from its points.
- :mod:`mska_core.synthetic.render`: drawing face and hand crops from 2-D points, and the generator of
  labelled synthetic crops for DINO pretraining.
- :mod:`mska_core.synthetic.crops`: :class:`~mska_core.synthetic.crops.SyntheticCrops`, the crop source
  of ``mska pretrain`` when no ``--train-dir`` is given.
"""
