# Every target does its own set-up into .venv (torch 2.13.0 first: a local CPU wheel on this project's
# machines; from a stock index it resolves the CUDA build: `make TORCH_INDEX=https://download.pytorch.org/whl/cpu`
# asks PyTorch's CPU index instead), so each works on a fresh machine.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.installed

.PHONY: setup demo test unit warm nbval book check-book page-metrics times results clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	mkdir -p .venv/etc/ipython && echo 'c.IPKernelApp.log_level = "ERROR"' > .venv/etc/ipython/ipython_kernel_config.py
	touch $(STAMP)

setup: $(STAMP)

## demo: on the synthetic data, train PVQAE, the VQ-VAE and PatchCore on the frozen efficientnet-lite0
## pyramid (at 128 px, set by the demo to fit about 5 minutes on 2 cores) with the same train / evaluate
## commands a user types; print image AUROC, pixel AUROC, PRO and each run's seconds, and write heat maps
## to runs/demo/heatmaps.png (BACKBONE=pixel: the paper's pixel PVQAE and VQ-VAE, no PatchCore). One torch
## thread unless OMP_NUM_THREADS is set: on a busy 2-core machine two threads made PVQAE alone take over
## 7 minutes, one thread the whole demo about 3.
BACKBONE ?= efficientnet-lite0
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pvqae_lib demo --backbone $(BACKBONE) --out runs/demo --force

## test: every unit test, every notebook under nbval, then the book build and its page check
test: unit nbval book

unit: $(STAMP)
	$(PY) -m pytest tests -q

## warm: train the models the chapters share, once (they are cached on disk, never in the repository).
## warm, nbval, book and times run one torch thread per process unless OMP_NUM_THREADS is set (on the
## 2-core CPU two threads per process made the first `make book` run 36 minutes, one thread trained the
## same models in 342 s) and print unbuffered, so each model's line appears as it is trained; warm
## trains two models at once on 2 cores (tools/warm_cache.py --jobs).
RUN := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1 PVQAE_PROFILE=quick

warm: $(STAMP)
	$(RUN) $(PY) tools/warm_cache.py

nbval: warm
	$(RUN) $(PY) -m pytest --nbval-lax -p no:cacheprovider book -q

## book: the rendered book in _build/html (quick profile, every chapter executed). The JavaScript for
## offline math and widgets comes from npm first; -W -n --keep-going turns every warning into a
## failure (reported together at the end); --all re-reads every page, because an incremental
## rebuild skips unchanged pages and would not repeat their warnings; check_book.py then inspects
## the built pages.
book: warm
	bash tools/fetch_js.sh
	start=$$(date +%s); $(RUN) .venv/bin/jupyter-book build . --all -W -n --keep-going; \
	status=$$?; echo "jupyter-book build: $$(( $$(date +%s) - start )) s"; exit $$status
	$(PY) tools/check_book.py

## check-book: check an existing build (pages, figures, no tracebacks, bibliography, the sources)
check-book: $(STAMP)
	$(PY) tools/check_book.py

## page-metrics: each built page's height, cut code blocks and too-wide equations at 1280 px, in
## headless Chromium (a page over 12,000 px, or an equation past its column or number, fails)
page-metrics: $(STAMP)
	$(PY) tools/page_metrics.py

## times: the shared models trained into a fresh cache (timed), then seconds per chapter on a fresh
## kernel (quick profile), as a markdown table; also updates
## the marked block of README.md when it has one
times: $(STAMP)
	$(RUN) $(PY) tools/time_chapters.py --fresh-cache --write-readme

## results: regenerate what is made from the committed results (book/_static/results/*.json): the index
## (index.csv), the book's results page (book/results.md), the README's headline table and the
## benchmark and feature tables of docs/status.md (tools/results_pages.py; --check only compares)
results: $(STAMP)
	$(PY) tools/results_pages.py

clean:
	rm -rf _build runs
