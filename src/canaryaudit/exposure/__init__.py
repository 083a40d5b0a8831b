"""Canary exposure (Carlini et al., *The Secret Sharer*, 2019).

:mod:`.scoring` (next-token scores shared over a candidate tree, Px in bits), :mod:`.token_space`
(which token sequences spell a valid filling under a tokenizer), :mod:`.estimators` (exposure from an
exact rank, by interpolation and by extrapolation), :mod:`.search` (exact rank and shortest-path
extraction), :mod:`.audit` (all of it for one canary format).
"""
