package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/platform/platform/bench"
	"github.com/platform/platform/bench/target"
	"github.com/platform/platform/services/txn/txnbench"
)

func newBenchTxnCmd(f *benchFlags) *cobra.Command {
	var o txnbench.Options
	cmd := &cobra.Command{
		Use:   "txn [all|kv|1key|4key|disjoint|shared|kvdisjoint|hot|scheduler]",
		Short: "Multi-key transactions vs raw kv.Update compare-and-set",
		Long: `Measure the txn library on one cluster, row by row:

  kv         raw kv.Get + kv.Update (single-key compare-and-set), 1 client
  1key       1-key transaction (read, write back +1), 1 client
  4key       4-key transaction, 1 client
  disjoint   1-key transactions from --clients clients on disjoint keys,
             each with its own connection
  shared     the same from --clients goroutines sharing one connection
             (their commits are group-committed into shared atomic batches)
  kvdisjoint raw kv.Get + kv.Update from --clients clients on disjoint keys
  hot        2-key transactions on --hot-keys keys from --clients clients
             (commit rate, abort rate, P99)
  scheduler  --commits 2-key blind writes, on disjoint keys, with --overlap
             key overlap and on --hot-keys keys, through the scheduler (what
             the txn service does with txn.commit) and through Store.Commit
             from 64 goroutines and from one goroutine per commit
             (concurrent group commit), side by side

"all" (the default) runs every row side by side and adds the ratios the
targets are stated in (x_kv_update, x_1key, x_1client, x_group).`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"all", "kv", "1key", "4key", "disjoint", "shared", "kvdisjoint", "hot", "scheduler"},
		RunE: func(cmd *cobra.Command, args []string) error {
			which := "all"
			if len(args) == 1 {
				which = args[0]
			}
			o.Progress = f.progressOut()
			return f.run(cmd, func(ctx context.Context, t *target.Target) ([]bench.Result, error) {
				return runTxnBench(ctx, txnbench.New(t, o), which)
			})
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&o.Duration, "duration", 0, "how long each timed row runs (default 5s)")
	fl.IntVar(&o.Clients, "clients", 16, "clients of the concurrent rows")
	fl.IntVar(&o.HotKeys, "hot-keys", 10, "keys of the hot-key row")
	fl.IntVar(&o.Commits, "commits", 1000, "commits of the scheduler row")
	fl.Float64Var(&o.Overlap, "overlap", 0.2, "share of scheduler commits reusing an earlier commit's key")
	return cmd
}

func runTxnBench(ctx context.Context, r *txnbench.Runner, which string) ([]bench.Result, error) {
	one := func(res bench.Result, err error) ([]bench.Result, error) { return []bench.Result{res}, err }
	switch which {
	case "all":
		return r.All(ctx)
	case "kv":
		return one(r.KVUpdate(ctx))
	case "1key":
		return one(r.Keys(ctx, 1))
	case "4key":
		return one(r.Keys(ctx, 4))
	case "disjoint":
		return one(r.Disjoint(ctx))
	case "shared":
		return one(r.DisjointShared(ctx))
	case "kvdisjoint":
		return one(r.KVDisjoint(ctx))
	case "hot":
		return one(r.Hot(ctx))
	case "scheduler":
		return r.SchedulerVsGroup(ctx)
	}
	return nil, fmt.Errorf("unknown txn bench %q (want all, kv, 1key, 4key, disjoint, shared, kvdisjoint, hot or scheduler)", which)
}
