"""Part I's theory on diagonal networks f(x; u ⊙ v): the problems (a diagonal linear regression and a
diagonal attention head), gradient flow and descent on (u, v) with the conservation law (chapter 1),
the exact log-variable engine for small initialisation α (chapter 2), Algorithm 1, the α → 0 limit
(chapter 3), and the stage measurements of the staircase (chapters 2–4). Imports only :mod:`lrt.core`.
"""
