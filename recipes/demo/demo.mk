# `make demo`: the whole pipeline on the bundled real de-en slice (data/demo/de-en), on CPU.
# prepare -> train a small teacher (time-boxed) -> export int8 -> eval, then print the table.
# Everything lands in runs/demo/; rerunning resumes or skips finished steps.

DEMO_RUN ?= runs/demo
DEMO_DATA ?= data/demo/de-en
DEMO_TEACHER_PRESET ?= tiny
DEMO_TEACHER_MINUTES ?= 10
DEMO_VOCAB ?= 4000
KDNMT := $(BIN)/kdnmt

.PHONY: demo demo-clean

demo: install
	@test -f $(DEMO_RUN)/manifest.json || $(KDNMT) prepare --run $(DEMO_RUN) --src de --tgt en \
		--train $(DEMO_DATA)/train --valid $(DEMO_DATA)/valid --test $(DEMO_DATA)/test \
		--vocab-size $(DEMO_VOCAB)
	@test -f $(DEMO_RUN)/models/teacher/model.json || $(KDNMT) train --run $(DEMO_RUN) \
		--name teacher --preset $(DEMO_TEACHER_PRESET) --config recipes/demo/teacher.yaml \
		--steps 100000 \
		--max-minutes $(DEMO_TEACHER_MINUTES) \
		$$(test -f $(DEMO_RUN)/models/teacher/config.yaml && echo --resume)
	$(KDNMT) export --run $(DEMO_RUN) --model teacher --quantization int8 --force
	$(KDNMT) eval --run $(DEMO_RUN) --models teacher --beam 1,5
	@echo "Demo done: the table above is in $(DEMO_RUN)/reports/eval.md"

demo-clean:
	rm -rf $(DEMO_RUN)
