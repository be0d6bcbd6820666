# Two commands for a fresh Debian machine (Python 3.11, no GPU, no display):
#   make demo   create .venv, install the plugin, open napari with the widgets
#               docked and a sample loaded (no display: run the same pipeline
#               headless and write its outputs to demo-output/)
#   make test   create .venv, install the test tools and, as root, the
#               virtual-display packages, then run the whole suite under Xvfb
#   make test-fast  the same without the tests marked slow (under 2 minutes)
#   make screenshots  regenerate the user guide's pictures (docs/images/user-guide)
#               by driving the real widgets under Xvfb
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages for napari's OpenGL canvas on a virtual display.
XVFB_PACKAGES := xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 \
	libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libdbus-1-3 \
	libfontconfig1
PYTEST_ARGS ?=
# Tests run in this many processes (pytest-xdist); 2 suits a 2-core laptop or CI runner.
PYTEST_WORKERS ?= 2
# pytest rewrites the asserts of napari's whole package (its pytest plugin); with bytecode
# writing off it redoes that in every process, seconds per worker.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv test test-fast demo screenshots system-packages clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,testing]"
	touch $@

# Installs Xvfb and Mesa when missing and we are root; otherwise says what to install.
system-packages:
	@if command -v xvfb-run >/dev/null && ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then \
		true; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing the virtual display (Xvfb, Mesa GL)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(XVFB_PACKAGES) >/dev/null; \
	else \
		echo "missing Xvfb/Mesa: run as root or: sudo apt-get install $(XVFB_PACKAGES)"; exit 1; \
	fi

test: venv system-packages
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-fast: venv system-packages
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

screenshots: venv system-packages
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) docs/screenshots.py docs/images/user-guide

demo: venv
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		$(VENV)/bin/nanowire-ssl demo; \
	else \
		echo "no display: running the demo pipeline headless, outputs in demo-output/"; \
		$(VENV)/bin/nanowire-ssl demo --headless --out demo-output; \
	fi

clean:
	rm -rf $(VENV) build dist demo-output src/*.egg-info
