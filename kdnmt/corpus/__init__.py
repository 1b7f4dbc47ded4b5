"""Parallel text: reading and validating corpora, SentencePiece, vocabularies."""
