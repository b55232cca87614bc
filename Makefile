# The platform's everyday commands. Only Go is needed; everything else is
# fetched through the Go module proxy.

GO        ?= go
BIN       ?= bin/platform
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# VERSION, if set (make build VERSION=1.2.3), is the version every service
# reports and `platform version` prints; unset, the binary derives it.
VERSION   ?=

.PHONY: run build test fuzz chaos bench lint clean screenshots

## run: start the 3-node embedded cluster and every service (Ctrl-C stops)
run:
	$(GO) run ./cmd/platform run

## build: build bin/platform
build:
	$(GO) build -ldflags "-X github.com/platform/platform/internal/version.version=$(VERSION)" -o $(BIN) ./cmd/platform

## test: the whole suite with the race detector, as CI runs it
test:
	$(GO) test -race -count=1 -timeout 20m ./...

# FUZZ lists every fuzz test of a decoder of untrusted input, as
# package:function. make test runs their seed corpora (length bombs
# included) as ordinary tests; make fuzz explores beyond them.
FUZZ ?= ./internal/msgpackscan:FuzzCheck ./service:FuzzDecode ./service:FuzzDecodeHeartbeat \
        ./services/replicator:FuzzDecodeEnvelope ./backup:FuzzReadSegment \
        ./services/replicator:FuzzEnvelopeKeys ./services/replicator:FuzzEventKey \
        ./services/consume:FuzzParseToken ./services/consume:FuzzAckRequest ./services/consume:FuzzNextRequest \
        ./services/consume:FuzzCreateRequest ./services/consume:FuzzDecodeConfig ./services/consume:FuzzWireEvent \
        ./services/txn:FuzzCommitRequest ./membership:FuzzDecode \
        ./services/alerting:FuzzPostAlerts ./services/alerting:FuzzSilence ./services/alerting:FuzzMatchersFromStrings \
        ./console:FuzzSilenceRequest ./console:FuzzQueryParams ./console:FuzzLoginRequest \
        ./services/balancer:FuzzDecodeRecord ./services/detector:FuzzMembersRequest ./services/detector:FuzzGetRequest \
        ./services/admin:FuzzStatusRequest ./services/admin:FuzzStatusAnswer
FUZZTIME ?= 1m

## fuzz: run each decoder's fuzz test for FUZZTIME (default 1m each; make fuzz FUZZTIME=10m)
fuzz:
	@set -e; for t in $(FUZZ); do \
		echo "fuzz $${t##*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

## chaos: the multi-process fault suites alone, printing each fault's outage: the platform's (kill -9, SIGSTOP, partition, full restart under load) and the consumer groups' at full scale (200k events; make test runs both scaled down)
chaos:
	$(GO) test -race -count=1 -timeout 20m -run '^TestFaults$$' -v ./cmd/platform
	CONSUME_FAULTS=full $(GO) test -race -count=1 -timeout 60m -run '^TestGroup(ExactlyOnce|AtLeastOnce)UnderFaults$$|^TestGroupFailoverTime$$' -v ./services/consume

## bench: Go benchmarks of every package (the platform bench command prints the side-by-side tables)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s -timeout 30m ./...

## screenshots: run the console's browser tests (needs chromium) and save a PNG of each page in docs/
screenshots:
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run '^TestConsoleInBrowser$$' -v ./console

## lint: formatting, vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

clean:
	rm -rf bin data
