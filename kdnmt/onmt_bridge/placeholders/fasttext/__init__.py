"""Import-time placeholder for fastText (see kdnmt/onmt_bridge/shims.py).

OpenNMT-py 3.5.1 imports fastText at module level in its `clean` transform (language-id
filtering), which kdnmt never uses. Using it fails loudly.
"""

KDNMT_PLACEHOLDER = True


def load_model(*args, **kwargs):
    raise ImportError(
        "fastText is not installed: kdnmt ships a placeholder because it does not use "
        "OpenNMT-py's language-id `clean` transform. Install fasttext-wheel to use it."
    )
