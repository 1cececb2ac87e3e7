package ingest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"aggregator/internal/queue"
)

// A receive loop owns many subscribers and waits for all of them at once,
// in epoll, on the descriptors libzmq signals when a socket may have
// something to read (ZMQ_FD). The daemon runs one loop per core, not one
// goroutine per endpoint: a thousand endpoints then cost nothing while they
// are quiet (no thread, no timer, no wake-up per endpoint), and zmq_poll,
// which asks every socket for its state on every call, is not on the path.
//
// ZMQ_FD signals a change, not a level: once it has fired, the socket must
// be read until EAGAIN before it fires again. A socket that filled a batch
// before it ran dry stays on the ready list and is read again in the next
// turn, after every other ready socket had its turn.
type loop struct {
	subs    []*Subscriber
	q       *queue.Queue
	epfd    int
	wake    [2]int // a pipe: ctx's end writes to [1] so that epoll_wait returns
	ready   []int  // subscribers (indexes into subs) that may hold messages
	next    []int  // the ready list being built during a turn
	isReady []bool
	evs     []syscall.EpollEvent
	flushAt time.Time // when an event log has a summary to write; zero: none
}

// Epoll tokens: subscriber i's socket is 2i, its monitor 2i+1.
const wakeToken = -1

// maxLoops caps the receive loops; more cores than this gain nothing, as
// one loop keeps up with libzmq's I/O thread (docs/performance.md).
const maxLoops = 8

func newLoop(subs []*Subscriber, q *queue.Queue) (_ *loop, err error) {
	l := &loop{subs: subs, q: q, isReady: make([]bool, len(subs)), evs: make([]syscall.EpollEvent, 256), wake: [2]int{-1, -1}}
	defer func() {
		if err != nil {
			l.closeFDs()
		}
	}()
	if l.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err = syscall.Pipe2(l.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	if err = l.watch(l.wake[0], wakeToken); err != nil {
		return nil, err
	}
	for i, s := range subs {
		sock, mon, err := s.fds()
		if err != nil {
			return nil, fmt.Errorf("%s: ZMQ_FD: %w", s.Endpoint(), err)
		}
		if err = errors.Join(l.watch(sock, int32(2*i)), l.watch(mon, int32(2*i+1))); err != nil {
			return nil, fmt.Errorf("%s: %w", s.Endpoint(), err)
		}
	}
	return l, nil
}

func (l *loop) watch(fd int, token int32) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: token}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run receives until ctx is done, then takes what libzmq already holds,
// hands it over and closes every socket. A batch is handed on as soon as
// its socket has nothing more waiting, so an idle daemon forwards each
// message at once.
func (l *loop) run(ctx context.Context) error {
	defer l.close()
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		syscall.Write(l.wake[1], []byte{1})
		close(woken)
	})
	defer func() {
		if !stop() {
			<-woken // it ran, or is running: the pipe is closed only after
		}
	}()
	// ZMQ_FD fires only after a read found the socket empty, so read each
	// socket and monitor once before waiting: whatever came before the loop
	// started would otherwise wait for the next signal.
	now := time.Now()
	for i, s := range l.subs {
		l.markReady(i)
		l.due(s.drainEvents(now))
	}
	var b *queue.Batch
	for ctx.Err() == nil {
		if err := l.wait(); err != nil {
			if b != nil {
				l.q.Recycle(b)
			}
			return err
		}
		turn := l.ready
		l.ready, l.next = l.next[:0], nil
		for _, i := range turn {
			l.isReady[i] = false
			s := l.subs[i]
			if b == nil {
				b = l.q.Get()
			}
			errno := s.recv.fill(b)
			l.due(s.st.takeDue())
			switch errno {
			case 0: // b is full; the socket may hold more
				l.markReady(i)
			case syscall.EAGAIN:
			default:
				s.deliver(b)
				// The daemon stops on this; what the other sockets hold is
				// still taken first.
				l.drain()
				return fmt.Errorf("receive on %s: %w", s.Endpoint(), errno)
			}
			if len(b.Records) > 0 {
				s.deliver(b)
				b = nil
			}
		}
		l.next = turn
	}
	if b != nil {
		l.q.Recycle(b)
	}
	l.drain()
	return nil
}

// wait blocks until a socket or a monitor is signalled, or returns at once
// when sockets are still known to hold messages. Monitor events are
// handled here; readable sockets go on the ready list.
func (l *loop) wait() error {
	timeout := -1
	switch {
	case len(l.ready) > 0:
		timeout = 0
	case !l.flushAt.IsZero():
		timeout = max(int(time.Until(l.flushAt).Milliseconds())+1, 0)
	}
	n, err := syscall.EpollWait(l.epfd, l.evs, timeout)
	if err == syscall.EINTR {
		return nil
	}
	if err != nil {
		return fmt.Errorf("epoll_wait: %w", err)
	}
	var now time.Time
	for _, ev := range l.evs[:n] {
		switch tok := int(ev.Fd); {
		case tok == wakeToken:
			var buf [64]byte
			syscall.Read(l.wake[0], buf[:])
		case tok%2 == 1:
			if now.IsZero() {
				now = time.Now()
			}
			s := l.subs[tok/2]
			l.due(s.drainEvents(now))
			if s.st.wantsEmptyRead() {
				l.markReady(tok / 2)
			}
		default:
			l.markReady(tok / 2)
		}
	}
	if !l.flushAt.IsZero() && !time.Now().Before(l.flushAt) {
		now, l.flushAt = time.Now(), time.Time{}
		for i, s := range l.subs {
			l.due(s.st.flushEvents(now))
			if s.st.anyDown() {
				due, read := s.revive(now)
				l.due(due)
				l.due(s.st.takeDue())
				if read || s.st.wantsEmptyRead() {
					l.markReady(i)
				}
			}
		}
	}
	return nil
}

// due notes when an event log next has a summary to write.
func (l *loop) due(t time.Time) { l.flushAt = earliest(l.flushAt, t) }

func (l *loop) markReady(i int) {
	if !l.isReady[i] {
		l.isReady[i] = true
		l.ready = append(l.ready, i)
	}
}

// drain takes what libzmq holds for each socket, until the socket is
// empty (or stopDrainMax has passed), and hands it over. Whatever arrives
// after is lost with the connection, as PUB/SUB and PUSH/PULL lose it.
func (l *loop) drain() {
	deadline := time.Now().Add(stopDrainMax)
	for _, s := range l.subs {
		s.ready.Store(false)
	}
	for _, s := range l.subs {
		s.drainEvents(time.Now()) // no monitor event left to block libzmq's close
		b := l.q.Get()
		for {
			errno := s.recv.fill(b)
			if full(b) {
				s.deliver(b)
				b = l.q.Get()
			}
			if errno != 0 {
				break
			}
			if time.Now().After(deadline) {
				s.st.src.eps[0].log.Warn("stop: publishers still sending after the drain time; the rest is lost", "socket", s.Endpoint(), "drain", stopDrainMax)
				break
			}
		}
		s.deliver(b)
	}
}

func (l *loop) close() {
	for _, s := range l.subs {
		s.Close()
	}
	l.closeFDs()
}

func (l *loop) closeFDs() {
	for _, fd := range []int{l.epfd, l.wake[0], l.wake[1]} {
		if fd > 0 {
			syscall.Close(fd)
		}
	}
}

// RunAll runs every subscriber, in one receive loop per core, until ctx is
// done or one of them fails. A failing subscriber stops the others too,
// since the daemon would otherwise run on with a silent gap in its inputs.
// Whoever runs it closes q.C once it and any other producer have
// returned: the sink then knows it has seen every received record.
func RunAll(ctx context.Context, subs []*Subscriber, q *queue.Queue) error {
	if len(subs) == 0 {
		return nil
	}
	n := min(runtime.GOMAXPROCS(0), maxLoops, len(subs))
	parts := make([][]*Subscriber, n)
	for i, s := range subs {
		parts[i%n] = append(parts[i%n], s)
	}
	loops := make([]*loop, 0, n)
	for _, part := range parts {
		l, err := newLoop(part, q)
		if err != nil {
			for _, l := range loops {
				l.close()
			}
			for _, s := range subs {
				s.Close()
			}
			return err
		}
		loops = append(loops, l)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, l := range loops {
		wg.Go(func() {
			if err := l.run(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
