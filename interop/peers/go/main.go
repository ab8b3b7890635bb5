// Command go-peer runs one interop scenario (interop/SCENARIOS.md) against a Kafka-compatible broker with franz-go
// (pkg/kgo for producing and consuming, pkg/kadm for the admin API).
//
//	go-peer --bootstrap HOST:PORT --scenario NAME --prefix PREFIX
//	go-peer --version
//
// It exits 0 when every check of the scenario held, 1 otherwise with the failed check (expected vs seen) on stderr.
// Each check that held is printed on stdout as "ok: ...". Every wait has a deadline, and the whole scenario runs
// under one overall deadline, so the peer finishes on its own well within the 120 s the pytest side allows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// scenarioDeadline bounds a whole scenario: the contract asks for at most 90 s.
	scenarioDeadline = 85 * time.Second
	// stepTimeout bounds one wait for a condition (metadata, assignment, records).
	stepTimeout = 30 * time.Second
	// pollInterval is how often a condition is polled while waiting for it.
	pollInterval = 100 * time.Millisecond
)

// scenarios maps each scenario name of SCENARIOS.md to its implementation.
var scenarios = map[string]func(ctx context.Context, p *peer) error{
	"produce-codecs":        produceCodecs,
	"produce-headers-nulls": produceHeadersNulls,
	"produce-idempotent":    produceIdempotent,
	"consume-offsets":       consumeOffsets,
	"consume-timestamp":     consumeTimestamp,
	"group-rebalance":       groupRebalance,
	"offsets-commit-fetch":  offsetsCommitFetch,
	"admin-topics":          adminTopics,
	"admin-groups":          adminGroups,
}

// peer carries what every scenario needs: the broker address, the name prefix, and one admin client.
type peer struct {
	bootstrap string
	prefix    string
	cl        *kgo.Client   // a plain client, for requests the admin API has no call for
	adm       *kadm.Client  // the admin API over cl
	clients   []*kgo.Client // closed at the end of the scenario unless closed earlier
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address HOST:PORT")
	scenario := flag.String("scenario", "", "scenario name (interop/SCENARIOS.md)")
	prefix := flag.String("prefix", "", "prefix of every topic and group the scenario creates")
	version := flag.Bool("version", false, "print the franz-go version this peer was built with and exit")
	flag.Parse()

	if *version {
		fmt.Println(franzGoVersion())
		return
	}
	run, ok := scenarios[*scenario]
	if *bootstrap == "" || *prefix == "" || !ok {
		names := make([]string, 0, len(scenarios))
		for name := range scenarios {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: go-peer --bootstrap HOST:PORT --scenario NAME --prefix PREFIX\n"+
			"scenarios: %s (got --scenario %q)\n", strings.Join(names, ", "), *scenario)
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), scenarioDeadline)
	p := &peer{bootstrap: *bootstrap, prefix: *prefix}
	p.cl = p.newClient()
	p.adm = kadm.NewClient(p.cl)
	err := run(ctx, p)
	for _, cl := range p.clients {
		cl.Close() // idempotent: clients the scenario closed itself are closed again harmlessly
	}
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (the scenario's overall %s deadline)", err, scenarioDeadline)
		}
		fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", *scenario, err)
		os.Exit(1)
	}
	fmt.Printf("scenario %s: every check held (franz-go %s)\n", *scenario, franzGoVersion())
}

// franzGoVersion is the version of github.com/twmb/franz-go linked into this binary (from go.mod via the build info).
func franzGoVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/twmb/franz-go" {
				if dep.Replace != nil {
					return dep.Replace.Version
				}
				return dep.Version
			}
		}
	}
	return "(unknown)"
}

// newClient makes a franz-go client for the broker; the scenario's clients are all closed when it ends.
// Warnings and errors of the client go to stderr, so a failure report shows what the client saw.
func (p *peer) newClient(opts ...kgo.Opt) *kgo.Client {
	base := []kgo.Opt{
		kgo.SeedBrokers(p.bootstrap),
		kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, func() string {
			return time.Now().UTC().Format("15:04:05.000 ")
		})),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		// NewClient fails only on invalid options: a bug in this program.
		panic(fmt.Sprintf("kgo.NewClient: %v", err))
	}
	p.clients = append(p.clients, cl)
	return cl
}

// ok reports a check that held.
func ok(format string, args ...any) {
	fmt.Printf("ok: "+format+"\n", args...)
}

// waitFor polls cond until it returns true or stepTimeout (or ctx) runs out. cond returns a description of the
// state it saw, used in the error when the wait times out.
func waitFor(ctx context.Context, what string, cond func(ctx context.Context) (bool, string)) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	last := ""
	for {
		done, state := cond(ctx)
		if done {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s; last seen: %s", what, last)
		case <-ticker.C:
		}
	}
}
