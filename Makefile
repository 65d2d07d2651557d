# edgeguard entry points. `make test` is the README's (and CI's) test command.
CARGO ?= cargo
PLUGIN_DIR := target/release
PLUGINS_DIR ?= $(shell pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null)
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin

.PHONY: deps build test lint unit memcheck inspect install bench demo demo-vpu docs aarch64 fuzz soak cuda clean \
	deb deb-arm64 check-deb test-arm64

deps:
	./scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

# The debug cdylib is built first: the tracer-mode and Python tests load it
# through GST_PLUGIN_PATH, as applications do (cargo test builds only the rlib).
unit: deps
	$(CARGO) build --locked --lib
	G_DEBUG=fatal_warnings $(CARGO) test --locked

inspect: build
	./scripts/check-inspect.sh $(PLUGIN_DIR)
	./scripts/check-install.sh

# The pipeline tests and a 10-cycle soak under valgrind memcheck: an invalid
# read or write, or a definite leak outside valgrind/edgeguard.supp, fails.
memcheck: deps
	./scripts/memcheck.sh

test: deps lint unit memcheck inspect check-deb test-arm64

install: build
	@test -n "$(PLUGINS_DIR)" || { echo "install: pkg-config knows no gstreamer-1.0 pluginsdir (run make deps)"; exit 1; }
	install -D -m 0644 $(PLUGIN_DIR)/libgstedgeguard.so $(DESTDIR)$(PLUGINS_DIR)/libgstedgeguard.so
	install -D -m 0755 $(PLUGIN_DIR)/edgeguard-vpu $(DESTDIR)$(BINDIR)/edgeguard-vpu
	install -D -m 0644 docs/edgeguard-vpu.1 $(DESTDIR)$(PREFIX)/share/man/man1/edgeguard-vpu.1

# The main job: a live rig with two guarded encoders, a delayed display and a leak check.
DEMO_SECONDS ?= 10
demo: deps
	$(CARGO) run --release --locked --example rig -- --seconds $(DEMO_SECONDS)

# The same rig with a simulated VPU of one session: one guard gets it, the other falls back.
demo-vpu: deps
	$(CARGO) run --release --locked --example rig -- --seconds $(DEMO_SECONDS) --simulate-vpu

# Regenerates docs/properties.md from the plugin (a test checks it is current).
docs: deps
	EDGEGUARD_UPDATE_DOCS=1 $(CARGO) test --locked --test property_reference

# Cross-builds target/aarch64-unknown-linux-gnu/release/libgstedgeguard.so for
# RK3588 and Jetson boards; make test builds it through test-arm64.
aarch64:
	./scripts/aarch64.sh

# Debian packages, target/debian/gstreamer1.0-edgeguard_<version>_<arch>.deb,
# with Depends computed by dpkg-shlibdeps and checked by lintian (docs/packaging.md).
deb: build
	./scripts/deb.sh amd64

deb-arm64: aarch64
	./scripts/deb.sh arm64

# The amd64 package installed with dpkg into a throwaway root, loaded by
# gst-inspect-1.0 from there, and removed without leaving a file behind.
check-deb: deb
	./scripts/check-deb.sh

# The arm64 package run under qemu-aarch64-static with Debian's arm64
# GStreamer unpacked into target/aarch64-sysroot: gst-inspect-1.0 and two
# pipelines. About 4 minutes from nothing (toolchain, 150 MB of arm64 packages,
# the cross-build), 10 s once target/ has them.
test-arm64: deb-arm64
	./scripts/test-arm64.sh

# The long forms: 1000 NULL->PLAYING->NULL cycles, and 60 s of churn in 4
# processes, without and with hardware failing mid-stream and reclaimed
# (make test runs 100 cycles and 8 s).
SOAK_CYCLES ?= 1000
CHURN_SECONDS ?= 60
soak: deps
	EDGEGUARD_SOAK_CYCLES=$(SOAK_CYCLES) G_DEBUG=fatal_warnings $(CARGO) test --locked --release --test soak -- --nocapture
	EDGEGUARD_CHURN_SECONDS=$(CHURN_SECONDS) G_DEBUG=fatal_warnings $(CARGO) test --locked --release --test vpuguardenc churn -- --nocapture
	EDGEGUARD_CHURN_SECONDS=$(CHURN_SECONDS) G_DEBUG=fatal_warnings $(CARGO) test --locked --release --test vpuguardenc_failover_churn churn -- --nocapture

# A longer campaign of the parsers' seeded property tests (make test runs 5-20k cases each).
FUZZ_CASES ?= 1000000
fuzz: deps
	EDGEGUARD_FUZZ_CASES=$(FUZZ_CASES) G_DEBUG=fatal_warnings $(CARGO) test --locked --release --lib random_ -- --nocapture

# delaybuffer on real CUDA memory (tests/cuda.rs): the tests are #[ignore]d in
# make test because they need an NVIDIA GPU, its driver and GStreamer's nvcodec
# plugin. For a GPU machine without GStreamer, see scripts/cuda-bundle.sh.
cuda: deps
	G_DEBUG=fatal_warnings $(CARGO) test --locked --test cuda -- --ignored --nocapture

# Side-by-side benchmarks; each prints its ratios.
bench: deps
	./scripts/bench.sh

clean:
	$(CARGO) clean
