# `make demo`: the main job on the bundled real de-en slice (data/demo/de-en), on CPU:
# prepare (adopting the bundled teacher) -> generate its pseudo-targets -> distill a baseline
# (ce) and a sequence-level KD student (seq) at equal budgets -> eval all three side by side,
# with sacrebleu's paired tests of every model against ce -> export the KD student. Everything
# lands in runs/demo/; a rerun skips finished steps and resumes an interrupted training.
#
# Budgets are in updates (optimizer steps), so the figures reproduce on any machine; the
# *_MAX_MINUTES caps are only a safety net (a capped model is marked stopped_by_time_budget in
# its model.json, and its figures are then not the documented ones).
#
# DEMO_TEACHER=bundled (default) adopts data/demo/teacher (trained by kdnmt on the full corpus,
# see data/demo/teacher/README.md); DEMO_TEACHER=train trains a teacher in the run instead, for
# DEMO_TEACHER_STEPS updates (weak: see docs/demo.md).

DEMO_RUN ?= runs/demo
DEMO_DATA ?= data/demo/de-en
DEMO_TEACHER ?= bundled
DEMO_TEACHER_DIR ?= data/demo/teacher
DEMO_VOCAB ?= 4000
DEMO_TEACHER_STEPS ?= 1500
DEMO_TEACHER_MAX_MINUTES ?= 30
DEMO_STUDENT_STEPS ?= 2400
DEMO_STUDENT_MAX_MINUTES ?= 20
KDNMT := $(BIN)/kdnmt
RESUME_IF_STARTED = $$(test -f $(DEMO_RUN)/models/$(1)/config.yaml && echo --resume)
ifeq ($(DEMO_TEACHER),bundled)
DEMO_VOCAB_ARGS := --teacher-checkpoint $(DEMO_TEACHER_DIR)/teacher.pt \
	--teacher-spm $(DEMO_TEACHER_DIR)/spm.model --teacher-vocab $(DEMO_TEACHER_DIR)/vocab.txt
else ifeq ($(DEMO_TEACHER),train)
DEMO_VOCAB_ARGS := --vocab-size $(DEMO_VOCAB)
else
$(error DEMO_TEACHER must be bundled or train, not '$(DEMO_TEACHER)')
endif

.PHONY: demo demo-clean

demo: install
	@test -f $(DEMO_RUN)/manifest.json || $(KDNMT) prepare --run $(DEMO_RUN) --src de --tgt en \
		--train $(DEMO_DATA)/train --valid $(DEMO_DATA)/valid --test $(DEMO_DATA)/test \
		$(DEMO_VOCAB_ARGS)
	@test -f $(DEMO_RUN)/models/teacher/model.json || $(KDNMT) train --run $(DEMO_RUN) \
		--name teacher --preset tiny --config recipes/demo/teacher.yaml --steps $(DEMO_TEACHER_STEPS) \
		--max-minutes $(DEMO_TEACHER_MAX_MINUTES) $(call RESUME_IF_STARTED,teacher)
	@test -f $(DEMO_RUN)/generated/teacher/manifest.json || $(KDNMT) generate --run $(DEMO_RUN) \
		--teacher teacher --beam 5
	@test -f $(DEMO_RUN)/models/ce/model.json || $(KDNMT) distill --run $(DEMO_RUN) --name ce \
		--method ce --preset tiny --config recipes/demo/student.yaml --steps $(DEMO_STUDENT_STEPS) \
		--max-minutes $(DEMO_STUDENT_MAX_MINUTES) $(call RESUME_IF_STARTED,ce)
	@test -f $(DEMO_RUN)/models/seq/model.json || $(KDNMT) distill --run $(DEMO_RUN) --name seq \
		--method seq --preset tiny --config recipes/demo/student.yaml --steps $(DEMO_STUDENT_STEPS) \
		--max-minutes $(DEMO_STUDENT_MAX_MINUTES) $(call RESUME_IF_STARTED,seq)
	$(KDNMT) eval --run $(DEMO_RUN) --models teacher,ce,seq --beam 1,5 --baseline ce
	$(KDNMT) plot --run $(DEMO_RUN) --models ce,seq
	$(KDNMT) export --run $(DEMO_RUN) --model seq --quantization int8 --force
	@echo "Demo done: the table above is in $(DEMO_RUN)/reports/eval.md"

demo-clean:
	rm -rf $(DEMO_RUN)

# Rebuild the bundled teacher (needs ../shared/data/de-en and ~40 minutes on 2 CPU cores): the
# same data, configuration and number of updates as the released one, then the release itself.
SHARED_DATA ?= ../shared/data/de-en
BUNDLED_TEACHER_RUN ?= runs/demo-teacher
BUNDLED_TEACHER_STEPS ?= 2622

.PHONY: demo-bundled-teacher
demo-bundled-teacher: install
	@test -f $(BUNDLED_TEACHER_RUN)/manifest.json || $(KDNMT) prepare --run $(BUNDLED_TEACHER_RUN) \
		--src de --tgt en --train $(SHARED_DATA)/train --valid $(DEMO_DATA)/valid \
		--test $(DEMO_DATA)/test --vocab-size $(DEMO_VOCAB)
	@test -f $(BUNDLED_TEACHER_RUN)/models/teacher/model.json || $(KDNMT) train \
		--run $(BUNDLED_TEACHER_RUN) --name teacher --preset tiny \
		--config recipes/demo/bundled-teacher.yaml --steps $(BUNDLED_TEACHER_STEPS) \
		$$(test -f $(BUNDLED_TEACHER_RUN)/models/teacher/config.yaml && echo --resume)
	$(KDNMT) eval --run $(BUNDLED_TEACHER_RUN) --models teacher --beam 1,5
	$(BIN)/python recipes/demo/release_teacher.py --run $(BUNDLED_TEACHER_RUN) --model teacher \
		--out $(DEMO_TEACHER_DIR)
