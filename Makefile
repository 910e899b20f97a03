# Talking Head Studio — developer entry points. Every target sets up .venv itself.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# re-install whenever the dependency pins change
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo test gui bench eval package clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (the studio needs CPython 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	# mediapipe 0.10.21 is the last release that ships the face-mesh models; --no-deps keeps its
	# non-headless OpenCV (Qt5 plugins that clash with PySide6) and jax out; see README.
	$(PY) -m pip install --quiet --no-deps mediapipe==0.10.21
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: setup
	mkdir -p out
	$(VENV)/bin/talkstudio render --image resources/obama_official.jpg \
		--audio resources/grid_bbaf2n.wav --output out/demo.mp4 --overwrite
	@echo "wrote out/demo.mp4"

# pytest exits 5 when it collects no test: not a failure of the build itself
test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

gui: setup
	$(VENV)/bin/talkstudio gui

bench: setup
	$(PY) benchmarks/bench_render.py

# lip-sync / image metrics on the real talking videos beside the repo (../shared/samples/video)
eval: setup
	$(VENV)/bin/talkstudio eval ../shared/samples/video/* --report out/eval

# the desktop app, one folder: dist/TalkingHeadStudio/ (PyInstaller; slow, see packaging/README.md)
PKG_STAMP := $(VENV)/.packaging-$(shell cksum pyproject.toml | cut -d' ' -f1)

package: setup $(PKG_STAMP)
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN packaging/TalkingHeadStudio.spec
	@du -sh dist/TalkingHeadStudio
	@echo "built dist/TalkingHeadStudio/TalkingHeadStudio (no command: the studio; render/models/...: as talkstudio)"

# the exact pins of pyproject's `package` extra, without re-installing the studio itself
$(PKG_STAMP): $(STAMP)
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['package']))" \
		| xargs $(PY) -m pip install --quiet
	rm -f $(VENV)/.packaging-*
	touch $(PKG_STAMP)

clean:
	rm -rf out build dist .pytest_cache
