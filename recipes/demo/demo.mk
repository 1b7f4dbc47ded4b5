# `make demo`: the whole pipeline on the bundled real de-en slice (data/demo/de-en), on CPU:
# prepare -> train a teacher (time-boxed) -> generate pseudo-targets -> distill a baseline (ce)
# and a sequence-level KD student (seq) at equal budgets -> eval all three side by side ->
# export the KD student. Everything lands in runs/demo/; a rerun skips finished steps and
# resumes an interrupted training.

DEMO_RUN ?= runs/demo
DEMO_DATA ?= data/demo/de-en
DEMO_VOCAB ?= 4000
DEMO_TEACHER_MINUTES ?= 10
DEMO_STUDENT_MINUTES ?= 2.5
KDNMT := $(BIN)/kdnmt
RESUME_IF_STARTED = $$(test -f $(DEMO_RUN)/models/$(1)/config.yaml && echo --resume)

.PHONY: demo demo-clean

demo: install
	@test -f $(DEMO_RUN)/manifest.json || $(KDNMT) prepare --run $(DEMO_RUN) --src de --tgt en \
		--train $(DEMO_DATA)/train --valid $(DEMO_DATA)/valid --test $(DEMO_DATA)/test \
		--vocab-size $(DEMO_VOCAB)
	@test -f $(DEMO_RUN)/models/teacher/model.json || $(KDNMT) train --run $(DEMO_RUN) \
		--name teacher --preset tiny --config recipes/demo/teacher.yaml --steps 100000 \
		--max-minutes $(DEMO_TEACHER_MINUTES) $(call RESUME_IF_STARTED,teacher)
	@test -f $(DEMO_RUN)/generated/teacher/manifest.json || $(KDNMT) generate --run $(DEMO_RUN) \
		--teacher teacher --beam 5
	@test -f $(DEMO_RUN)/models/ce/model.json || $(KDNMT) distill --run $(DEMO_RUN) --name ce \
		--method ce --preset tiny --config recipes/demo/student.yaml --steps 100000 \
		--max-minutes $(DEMO_STUDENT_MINUTES) $(call RESUME_IF_STARTED,ce)
	@test -f $(DEMO_RUN)/models/seq/model.json || $(KDNMT) distill --run $(DEMO_RUN) --name seq \
		--method seq --preset tiny --config recipes/demo/student.yaml --steps 100000 \
		--max-minutes $(DEMO_STUDENT_MINUTES) $(call RESUME_IF_STARTED,seq)
	$(KDNMT) eval --run $(DEMO_RUN) --models teacher,ce,seq --beam 1,5
	$(KDNMT) export --run $(DEMO_RUN) --model seq --quantization int8 --force
	@echo "Demo done: the table above is in $(DEMO_RUN)/reports/eval.md"

demo-clean:
	rm -rf $(DEMO_RUN)
