"""Compiled per-byte kernels (Cython); they import nothing of the project.

``_delta``: Fossil's delta format (create, apply, output_size, checksum).
``_gittree``: the scan of a Git tree an import judges (``plain_tree``).
``_manifest``: the plain F cards of a manifest (``file_cards``).
"""
