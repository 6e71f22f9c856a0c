"""Representational similarity: CKA on activation matrices, and layerwise CKA across domains.

* :mod:`interp.similarity.cka`: pure CKA / HSIC functions on ``(n, d)`` matrices;
* :mod:`interp.similarity.cross_domain`: class means and cross-domain (or cross-model) CKA
  of pooled activations, as tidy tables.
"""
