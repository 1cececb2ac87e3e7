package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// syncIntervals are the AGG_SYNC_INTERVAL settings the syncing run
// compares: never between rotations, the default, and a short one.
var syncIntervals = []string{"0s", "1s", "10ms"}

// runSyncCost measures what syncing the live file costs: the peak case
// (one publisher, c.syncN messages, no rotation; median of c.runs, each
// beside a run of the reference subscriber) and the sustained case (the
// rotation run with gzip), once per setting, all in this one run, so
// that the ratios compare like with like.
func runSyncCost(bins binaries, c config, out io.Writer, check func(string, tally)) error {
	fmt.Fprintf(out, "\nsyncing the live file (AGG_SYNC_INTERVAL), one publisher:\n")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tAGG_SYNC_INTERVAL\tdaemon msg/s\treference msg/s\tratio\tfile syncs\t")
	for _, interval := range syncIntervals {
		env := map[string]string{"AGG_SYNC_INTERVAL": interval}
		name := fmt.Sprintf("peak N=%s", short(c.syncN))
		var ds, rs []sample
		for range c.runs {
			r, err := runReference(bins, 1, c.syncN, c.size)
			if err != nil {
				return fmt.Errorf("%s reference: %w", name, err)
			}
			rs = append(rs, r)
			d, err := runDaemonPeak(bins, 1, c.syncN, c.size, env)
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, interval, err)
			}
			check(name+" sync "+interval, d.t)
			ds = append(ds, d)
		}
		d, r := median(ds), median(rs)
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%d\t\n", name, interval, d.rate(c.syncN), r.rate(c.syncN), d.rate(c.syncN)/r.rate(c.syncN), d.syncs)
	}
	if c.rotateN > 0 {
		for _, interval := range syncIntervals {
			name := fmt.Sprintf("rotate %dMB+gzip N=%s", c.rotateMB, short(c.rotateN))
			r, err := runReference(bins, 1, c.rotateN, c.size)
			if err != nil {
				return fmt.Errorf("%s reference: %w", name, err)
			}
			d, _, err := runDaemonRotating(bins, 1, c.rotateN, c.size, c.rotateMB, "gzip", map[string]string{"AGG_SYNC_INTERVAL": interval})
			if err != nil {
				return fmt.Errorf("%s %s: %w", name, interval, err)
			}
			check(name+" sync "+interval, d.t)
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.2f\t%d\t\n", name, interval, d.rate(c.rotateN), r.rate(c.rotateN), d.rate(c.rotateN)/r.rate(c.rotateN), d.syncs)
		}
	}
	return tw.Flush()
}
