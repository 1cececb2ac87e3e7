package ingest

import (
	"context"
	"errors"
	"sync"
)

// RunAll runs every subscriber until ctx is done or one of them fails, and
// closes q.C once all have returned: the sink then knows it has seen every
// received record. A failing subscriber stops the others too, since the
// daemon would otherwise run on with a silent gap in its inputs.
func RunAll(ctx context.Context, subs []*Subscriber, q *Queue, abort <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, s := range subs {
		wg.Go(func() {
			if err := s.Run(ctx, abort); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	close(q.C)
	return errors.Join(errs...)
}
