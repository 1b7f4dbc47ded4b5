"""The only package that imports OpenNMT-py (``onmt``).

Keeping every contact with OpenNMT-py here means a move to its successor touches one place.
Importing this package applies the compatibility shims (:mod:`.shims`) before ``onmt`` is
imported anywhere.
"""

from kdnmt.onmt_bridge import shims

shims.install()
