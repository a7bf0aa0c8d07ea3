# The two commands: `make run` and `make test`. Both set everything up on a fresh machine.
PY      := .venv/bin/python
STAMP   := .venv/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test pytest eval-gate eval2-gate quick index lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

index/manifest.json: | $(STAMP)
	.venv/bin/rag index corpus --index-dir index

index: $(STAMP)
	.venv/bin/rag index corpus --index-dir index

run: $(STAMP) index/manifest.json
	.venv/bin/rag serve --index-dir index

# ruff first, then the test suite and the two eval gates side by side: pytest leaves about a third of
# the 2 cores idle (servers, subprocesses, browser waits), which the gates fill (single-threaded torch);
# each target's output is printed whole when it ends.
test: $(STAMP)
	.venv/bin/ruff check rag tests benchmarks app.py
	$(MAKE) --no-print-directory -j3 --output-sync=target pytest eval-gate eval2-gate

pytest: $(STAMP)
	.venv/bin/python -m pytest -q

eval-gate: $(STAMP)
	OMP_NUM_THREADS=1 .venv/bin/rag eval --qa eval/qa.jsonl --corpus corpus --index-dir .cache/eval-index \
	  --report .cache/eval-report \
	  --min hit@5=0.88 --min answer_recall=0.70 --min citation_precision=0.72 \
	  --min unanswerable_abstained=0.6 --max answerable_wrongly_abstained=0.1

eval2-gate: $(STAMP)
	OMP_NUM_THREADS=1 .venv/bin/rag eval --qa eval/qa2.jsonl --corpus eval/corpus2 --index-dir .cache/eval2-index \
	  --report .cache/eval2-report \
	  --min hit@5=0.91 --min answer_recall=0.65 --min citation_precision=0.58 \
	  --min unanswerable_abstained=0.6 --max answerable_wrongly_abstained=0.11

# the everyday loop (a few minutes on 2 cores): everything but servers, browsers, subprocesses and the local LLM
quick: $(STAMP)
	.venv/bin/ruff check rag tests benchmarks app.py
	.venv/bin/python -m pytest -q -m "not slow"

lint: $(STAMP)
	.venv/bin/ruff check rag tests benchmarks app.py

clean:
	rm -rf .venv .cache
