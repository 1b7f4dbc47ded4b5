"""Import-time placeholder for spaCy (see kdnmt/onmt_bridge/shims.py).

OpenNMT-py 3.5.1 imports spaCy at module level in its terminology transform, which kdnmt never
uses; this module lets that import succeed without ~200 MB of spaCy. Using it fails loudly.
"""

KDNMT_PLACEHOLDER = True


def load(*args, **kwargs):
    raise ImportError(
        "spaCy is not installed: kdnmt ships a placeholder because it does not use "
        "OpenNMT-py's terminology transform. Install spacy to use that transform."
    )
