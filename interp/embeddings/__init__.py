"""Analyses of final image embeddings (and pooled layer activations) across domains.

* :mod:`.separation`: how far apart the domains sit (domain-mean and class-mean distances,
  per-dimension mean differences, a cross-validated linear domain probe);
* :mod:`.projection`: a seeded 2-D UMAP picture (densMAP) of a per-domain subsample;
* :mod:`.sae`: a sparse autoencoder (dictionary) trained on the embeddings;
* :mod:`.sharing`: how many of the SAE's top latents two domains share, per class.

Every function takes tensors/arrays and label arrays and returns tidy tables.
"""
