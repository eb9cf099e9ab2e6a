"""The versioned store: artifacts in LMDB, Fossil-format check-ins, branches, tags, indexes.

Global state is the ``blob`` table (the artifacts); every other table is local
state that ``rebuild`` regenerates from the artifacts alone.
"""
