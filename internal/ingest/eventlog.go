package ingest

import (
	"context"
	"log/slog"
	"time"
)

// eventLogEvery is the most often one kind of connection event of one
// endpoint is logged. A thousand publishers reconnecting, or a flood of
// connections that fail their handshake, must not become a log flood: the
// metrics count every event, the log says that they happen.
const eventLogEvery = time.Minute

// eventLog limits one endpoint's connection-event log lines: the first
// event of a kind is logged at once, later ones at most once a minute, in
// a line that says how many there were. Owned by the subscriber's loop.
type eventLog struct {
	kinds [numEventKinds]struct {
		level    slog.Level
		next     time.Time // no line for this kind before then
		unlogged int       // events since the last line
		lastAddr string
	}
}

var eventMessages = [numEventKinds]string{
	evConnected:    "publisher connected",
	evAccepted:     "publisher connected",
	evDisconnected: "publisher disconnected",
	evListening:    "listening",
	evRestarted:    "publisher not connected again by libzmq within its reconnect time: connecting anew (libzmq gives up after a protocol error, such as a frame over the maximum message size)",
}

func eventMessage(kind int) string {
	if m := eventMessages[kind]; m != "" {
		return m
	}
	return "socket event"
}

// note logs an event, or counts it when its kind was logged less than
// eventLogEvery ago.
func (l *eventLog) note(log *slog.Logger, now time.Time, kind int, level slog.Level, addr string) {
	k := &l.kinds[kind]
	k.level = level
	if now.Before(k.next) {
		k.unlogged++
		k.lastAddr = addr
		return
	}
	if k.unlogged > 0 { // the summary of the minute before comes first
		log.Log(context.Background(), k.level, eventMessage(kind), "event", eventKinds[kind], "addr", k.lastAddr,
			"count", k.unlogged, "within", eventLogEvery)
		k.unlogged = 0
	}
	log.Log(context.Background(), level, eventMessage(kind), "event", eventKinds[kind], "addr", addr)
	k.next = now.Add(eventLogEvery)
}

// flush writes one summary line for each kind whose minute is over with
// events not yet logged. It returns when it next has something to write
// (zero: nothing is pending).
func (l *eventLog) flush(log *slog.Logger, now time.Time) time.Time {
	for kind := range l.kinds {
		k := &l.kinds[kind]
		if k.unlogged == 0 || now.Before(k.next) {
			continue
		}
		log.Log(context.Background(), k.level, eventMessage(kind), "event", eventKinds[kind], "addr", k.lastAddr,
			"count", k.unlogged, "within", eventLogEvery)
		k.unlogged = 0
		k.next = now.Add(eventLogEvery)
	}
	return l.next()
}

// next is when flush next has something to write (zero: nothing pending).
func (l *eventLog) next() time.Time {
	var due time.Time
	for _, k := range l.kinds {
		if k.unlogged > 0 && (due.IsZero() || k.next.Before(due)) {
			due = k.next
		}
	}
	return due
}
