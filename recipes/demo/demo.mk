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
# DEMO_TEACHER=bundled (default) adopts DEMO_TEACHER_DIR, the repository's teacher
# data/demo/teacher (3+1 layers, d_model 384, 9.2M parameters, 16.8 BLEU beam 5, trained by kdnmt
# on the full corpus). DEMO_TEACHER_DIR=data/demo/teacher-small adopts the earlier small teacher
# (2+1 layers, 3.66M, 10.1 BLEU) instead; with the students' schedule (DEMO_STUDENT_CONFIG) both
# were compared on validation, and the stronger teacher gave the better seq student (docs/demo.md).
# DEMO_TEACHER=train trains a teacher in the run instead, for DEMO_TEACHER_STEPS updates (weak:
# see docs/demo.md).

DEMO_RUN ?= runs/demo
DEMO_DATA ?= data/demo/de-en
DEMO_TEACHER ?= bundled
DEMO_TEACHER_DIR ?= data/demo/teacher
DEMO_VOCAB ?= 4000
DEMO_TEACHER_STEPS ?= 1500
DEMO_TEACHER_MAX_MINUTES ?= 30
DEMO_STUDENT_STEPS ?= 2400
DEMO_STUDENT_MAX_MINUTES ?= 40
# the students' schedule, chosen on validation for the 2,400-update budget (see the file)
DEMO_STUDENT_CONFIG ?= recipes/demo/demo-student.yaml
# threads of each of the two students, which train side by side: half the cores, at least one
DEMO_STUDENT_THREADS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n > 1 ? n / 2 : 1 )))
KDNMT := $(BIN)/kdnmt
# Training arithmetic: bfloat16 products where the CPU has them natively (avx512_bf16 or AMX;
# 1.26x the updates per second of the tiny students at one thread each, 1.5x for the bundled
# teacher's shape at two: docs/benchmarks.md), float32 elsewhere, where bf16 is emulated:
# kdnmt's --precision auto decides, and the model's config.yaml records which it ran.
DEMO_PRECISION ?= auto
# $(call RESUME_IF_STARTED,RUN,MODEL): --resume when MODEL has started training in RUN.
RESUME_IF_STARTED = $$(test -f $(1)/models/$(2)/config.yaml && echo --resume)
ifeq ($(DEMO_TEACHER),bundled)
DEMO_VOCAB_ARGS := --teacher-checkpoint $(DEMO_TEACHER_DIR)/teacher.pt \
	--teacher-spm $(DEMO_TEACHER_DIR)/spm.model --teacher-vocab $(DEMO_TEACHER_DIR)/vocab.txt
else ifeq ($(DEMO_TEACHER),train)
DEMO_VOCAB_ARGS := --vocab-size $(DEMO_VOCAB)
else
$(error DEMO_TEACHER must be bundled or train, not '$(DEMO_TEACHER)')
endif

.PHONY: demo demo-clean demo-student-ce demo-student-seq

demo: install
	@test -f $(DEMO_RUN)/manifest.json || $(KDNMT) prepare --run $(DEMO_RUN) --src de --tgt en \
		--train $(DEMO_DATA)/train --valid $(DEMO_DATA)/valid --test $(DEMO_DATA)/test \
		$(DEMO_VOCAB_ARGS)
	@test -f $(DEMO_RUN)/models/teacher/model.json || $(KDNMT) train --run $(DEMO_RUN) \
		--name teacher --preset tiny --config recipes/demo/teacher.yaml --steps $(DEMO_TEACHER_STEPS) \
		--max-minutes $(DEMO_TEACHER_MAX_MINUTES) --precision $(DEMO_PRECISION) \
		$(call RESUME_IF_STARTED,$(DEMO_RUN),teacher)
	@test -f $(DEMO_RUN)/generated/teacher/manifest.json || $(KDNMT) generate --run $(DEMO_RUN) \
		--teacher teacher --beam 5
	@$(MAKE) --no-print-directory -j2 demo-student-ce demo-student-seq
	$(KDNMT) eval --run $(DEMO_RUN) --models teacher,ce,seq --beam 1,5 --baseline ce
	$(KDNMT) plot --run $(DEMO_RUN) --models ce,seq
	$(KDNMT) export --run $(DEMO_RUN) --model seq --quantization int8 --force
	@echo "Demo done: the table above is in $(DEMO_RUN)/reports/eval.md"

# The two students train side by side, each on half the cores (KDNMT_THREADS): a `tiny` model
# is too small for two threads to pay, so on 2 cores this is faster than one student after the
# other at two threads (docs/demo.md). seq shows its progress; ce's goes to its log.
DEMO_STUDENT_ARGS = --preset tiny --config $(DEMO_STUDENT_CONFIG) --steps $(DEMO_STUDENT_STEPS) \
	--max-minutes $(DEMO_STUDENT_MAX_MINUTES) --precision $(DEMO_PRECISION)
demo-student-ce:
	@test -f $(DEMO_RUN)/models/ce/model.json || { mkdir -p $(DEMO_RUN)/logs && \
		echo "ce trains beside seq ($(DEMO_STUDENT_THREADS) thread(s) each); its progress: $(DEMO_RUN)/logs/ce.log" && \
		KDNMT_THREADS=$(DEMO_STUDENT_THREADS) $(KDNMT) distill --run $(DEMO_RUN) --name ce --method ce \
		$(DEMO_STUDENT_ARGS) $(call RESUME_IF_STARTED,$(DEMO_RUN),ce) > $(DEMO_RUN)/logs/ce.log 2>&1 || \
		{ echo "ce failed; the end of $(DEMO_RUN)/logs/ce.log:"; tail -n 5 $(DEMO_RUN)/logs/ce.log; exit 1; }; }
demo-student-seq:
	@test -f $(DEMO_RUN)/models/seq/model.json || KDNMT_THREADS=$(DEMO_STUDENT_THREADS) \
		$(KDNMT) distill --run $(DEMO_RUN) --name seq --method seq $(DEMO_STUDENT_ARGS) \
		$(call RESUME_IF_STARTED,$(DEMO_RUN),seq)

demo-clean:
	rm -rf $(DEMO_RUN)

# The bundled teacher (data/demo/teacher/README.md): d_model 384, 3+1 layers, 9.2M parameters,
# trained by kdnmt on the full corpus (SHARED_DATA) with the demo's SentencePiece model and
# vocabulary, over several sittings. It ships as a resumable release (float16 weights, the
# optimizer's step counters, its logs). Each `make demo-bundled-teacher` puts the release back
# into BUNDLED_TEACHER_RUN (continue_teacher.py) unless that run has the model already, trains up
# to BUNDLED_TEACHER_MINUTES more (safety cap; the budget is BUNDLED_TEACHER_STEPS updates),
# evaluates, and releases where it got to into BUNDLED_TEACHER_DIR. BUNDLED_TEACHER_FROM=scratch
# starts over from random weights (same vocabulary, same schedule): to rebuild the release,
# train to its step (released-from.json). The small teacher the demo adopts
# (data/demo/teacher-small, its README) was trained with `kdnmt train` for 2,622 updates of the
# same data, 2+1 layers, d_model 256 (recipe in its README).
SHARED_DATA ?= ../shared/data/de-en
BUNDLED_TEACHER_DIR ?= data/demo/teacher
BUNDLED_TEACHER_RUN ?= runs/demo-teacher
BUNDLED_TEACHER_STEPS ?= 12000
BUNDLED_TEACHER_MINUTES ?= 120
BUNDLED_TEACHER_FROM ?= release
BUNDLED_TEACHER_NAME := t384
BUNDLED_TEACHER_PRECISION ?= auto
ifeq ($(filter $(BUNDLED_TEACHER_FROM),release scratch),)
$(error BUNDLED_TEACHER_FROM must be release or scratch, not '$(BUNDLED_TEACHER_FROM)')
endif

.PHONY: demo-bundled-teacher
demo-bundled-teacher: install
	@test -f $(BUNDLED_TEACHER_RUN)/manifest.json || $(KDNMT) prepare --run $(BUNDLED_TEACHER_RUN) \
		--src de --tgt en --train $(SHARED_DATA)/train --valid $(DEMO_DATA)/valid \
		--test $(DEMO_DATA)/test --teacher-checkpoint $(BUNDLED_TEACHER_DIR)/teacher.pt \
		--teacher-spm $(BUNDLED_TEACHER_DIR)/spm.model --teacher-vocab $(BUNDLED_TEACHER_DIR)/vocab.txt
	@test -f $(BUNDLED_TEACHER_RUN)/models/$(BUNDLED_TEACHER_NAME)/config.yaml \
		|| test $(BUNDLED_TEACHER_FROM) = scratch \
		|| $(BIN)/python recipes/demo/continue_teacher.py --release $(BUNDLED_TEACHER_DIR) \
		--run $(BUNDLED_TEACHER_RUN) --model $(BUNDLED_TEACHER_NAME)
	$(KDNMT) train --run $(BUNDLED_TEACHER_RUN) --name $(BUNDLED_TEACHER_NAME) --role teacher \
		--preset tiny --config recipes/demo/bundled-teacher.yaml --steps $(BUNDLED_TEACHER_STEPS) \
		--max-minutes $(BUNDLED_TEACHER_MINUTES) --precision $(BUNDLED_TEACHER_PRECISION) \
		$(call RESUME_IF_STARTED,$(BUNDLED_TEACHER_RUN),$(BUNDLED_TEACHER_NAME))
	$(KDNMT) eval --run $(BUNDLED_TEACHER_RUN) --models $(BUNDLED_TEACHER_NAME) --beam 1,5
	$(BIN)/python recipes/demo/release_teacher.py --run $(BUNDLED_TEACHER_RUN) \
		--model $(BUNDLED_TEACHER_NAME) --out $(BUNDLED_TEACHER_DIR) --resumable
