"""Deterministic workflow code: the journey interpreter and its message types.

No I/O, clocks, randomness or settings reads here: everything comes in through the
workflow input, signals and activity results (see architecture.md, "Determinism").
"""
