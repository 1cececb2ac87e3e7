# Build, test, install and package. The binaries need cgo and link Debian's
# shared libzmq5 (scripts/install-deps installs libzmq3-dev), so that apt's
# security updates reach them: `make build` is a plain `go build` with the
# version stamped in.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
DOCDIR  ?= $(PREFIX)/share/doc/aggregator
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
CONFDIR ?= /etc/aggregator
GO      ?= go
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test race lint smoke bench bench-smoke install uninstall deb clean

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/aggregator ./cmd/aggregator
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/downcase ./cmd/downcase

test:
	./scripts/test

race:
	$(GO) test -race ./...

smoke:
	$(GO) test -short ./...

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: build
	$(GO) run ./bench $(BENCHFLAGS)

# dist/aggregator_<version>_<arch>.deb, built by dpkg-buildpackage from
# debian/ and checked by lintian (scripts/build-deb; needs debhelper and
# lintian, which scripts/install-deps --deb installs).
deb:
	./scripts/build-deb $(DEB_VERSION)

# Installs binaries, units, the sysusers entry, example configuration (never
# overwriting an existing one) and docs. With DESTDIR empty it also creates
# the system user and reloads systemd when they are there.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 bin/aggregator bin/downcase $(DESTDIR)$(BINDIR)/
	for u in aggregator downcase; do \
		sed -e 's#=/usr/bin/#=$(BINDIR)/#' -e 's#/usr/share/doc/aggregator/#$(DOCDIR)/#' systemd/$$u.service > $(DESTDIR)$(UNITDIR)/$$u.service; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service; \
	done
	install -m 0644 systemd/aggregator.sysusers $(DESTDIR)$(SYSUSERSDIR)/aggregator.conf
	for c in aggregator downcase; do \
		test -e $(DESTDIR)$(CONFDIR)/$$c.env || install -m 0644 configs/$$c.env $(DESTDIR)$(CONFDIR)/$$c.env; \
	done
	install -m 0644 README.md systemd/aggregator.logrotate $(DESTDIR)$(DOCDIR)/
	sed 's#/usr/share/aggregator/#$(PREFIX)/share/aggregator/#' configs/prometheus.yml > $(DESTDIR)$(DOCDIR)/prometheus.yml
	install -d $(DESTDIR)$(DOCDIR)/docs
	install -m 0644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	install -D -m 0644 configs/alerts.yml $(DESTDIR)$(PREFIX)/share/aggregator/alerts.yml
	@if [ -z "$(DESTDIR)" ]; then \
		if command -v systemd-sysusers >/dev/null; then systemd-sysusers $(SYSUSERSDIR)/aggregator.conf; \
		elif ! id aggregator >/dev/null 2>&1; then useradd --system --no-create-home --shell /usr/sbin/nologin aggregator; fi; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi

# Removes what install put in place except the configuration and the logs.
uninstall:
	-@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now aggregator.service downcase.service; fi
	rm -f $(DESTDIR)$(BINDIR)/aggregator $(DESTDIR)$(BINDIR)/downcase
	rm -f $(DESTDIR)$(UNITDIR)/aggregator.service $(DESTDIR)$(UNITDIR)/downcase.service
	rm -f $(DESTDIR)$(SYSUSERSDIR)/aggregator.conf
	rm -rf $(DESTDIR)$(DOCDIR) $(DESTDIR)$(PREFIX)/share/aggregator
	-@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

clean:
	rm -rf bin dist
