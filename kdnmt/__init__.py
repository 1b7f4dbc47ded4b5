"""kdnmt: knowledge distillation for neural machine translation.

A small, fast student from a big teacher: OpenNMT-py trains, CTranslate2 decodes and serves,
and every step reads and writes one run directory so it can be rerun or resumed alone.
"""

__version__ = "0.1.0"

#: Version of the on-disk run directory layout. A run written with another value is refused
#: rather than half-understood (see :mod:`kdnmt.rundir`).
RUN_FORMAT = 1
