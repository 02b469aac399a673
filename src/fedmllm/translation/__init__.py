"""X-FLoRA's cross-modal image translation (docs/modality.md, "Cross-modal translation").

Hospitals that each hold one imaging modality learn, together and without sharing an image, a
text-conditioned image-to-image translator between modalities; each hospital then translates
its own training images into the other modalities and trains the other modalities'
LoRA experts on them.

- :mod:`.models` — the translator (FiLM-conditioned conv generator), patch discriminator,
  modality classifier, hashed bag-of-words text features.
- :mod:`.federated` — the federated asymmetric scheme: local update, discriminator quality
  score, score-weighted aggregation, the round loop.
- :mod:`.augment` — translated copies of a client's training samples.
- :mod:`.quality` — modality-classifier accuracy and a Fréchet feature distance.
- :mod:`.benchmark` — ``crossmodal_xflora_synth``: ``crossmodal_synth`` plus the translations.
"""
