"""`kdnmt study`: the token- vs sentence-level KD grid (Wei et al. 2024's question) on any data.

- :mod:`kdnmt.study.grid`: the grid file (sizes x noise x methods x decoding), strictly read;
- :mod:`kdnmt.study.layout`: the cells and the study directory's paths (``StudyDir``);
- :mod:`kdnmt.study.run`: the runner (every cell a normal prepare/generate/distill/eval run);
- :mod:`kdnmt.study.report` and :mod:`kdnmt.study.plots`: study.csv, study.md and the plots;
- :mod:`kdnmt.study.advise` (the measurement of `kdnmt advise`) and :mod:`kdnmt.study.rule`
  (the rule that turns its signals into word, seq or hybrid).

Nothing is imported here, so that reading one part stays cheap.
"""
