package sink

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"aggregator/internal/statefile"
)

// logFile is one file the writer writes: the live file, lumberjack's
// rotation of it, the lines waiting for it, and its backups' compressor.
// Everything in it is owned by the writer's goroutine.
type logFile struct {
	path       string
	keys       []string // with a file per source: its keys in Writer.byKey
	lj         *lumberjack.Logger
	comp       *compressor // nil until it has backups to look after
	live       *os.File    // the writer's own descriptor, to sync; nil while closed
	inode      uint64      // of live
	size       int64       // bytes in the live file, mirrored to rotate before lumberjack would
	partial    bool        // a failed write left the file without its last newline
	dirty      bool        // written since the last sync
	lastRotate time.Time
	nextRotate time.Time
	lastUsed   time.Time
	buf        []byte // lines not yet written
	lines      int    // in buf
	queued     bool   // in the writer's list of files with lines to write
	lru        *list.Element
}

func newLogFile(path string, maxSizeMB int) *logFile {
	return &logFile{
		path: path,
		lj: &lumberjack.Logger{
			Filename:  path,
			MaxSize:   maxSizeMB,
			LocalTime: false,
			Compress:  false, // compression and retention: see compressor
		},
	}
}

// open opens the file at the path (creating it) beside lumberjack, which
// opens lazily on the first write: a path that cannot be written fails now
// rather than at the first message, and the writer has a descriptor of its
// own to sync, since lumberjack exposes none. Both name the same file:
// only the writer's goroutine rotates and reopens. A routed file's name
// comes from publishers: it is opened without following a symbolic link
// planted at its name, and must be a regular file.
func (f *logFile) open(routed bool) error {
	flags := os.O_WRONLY | os.O_APPEND
	if routed {
		flags |= syscall.O_NOFOLLOW | syscall.O_NONBLOCK // a FIFO planted there must not hang the writer
	}
	file, err := os.OpenFile(f.path, flags, 0)
	created := false
	if errors.Is(err, fs.ErrNotExist) {
		file, err = os.OpenFile(f.path, flags|os.O_CREATE|os.O_EXCL, 0o640)
		created = true
	}
	if err != nil {
		return err // names the file
	}
	info, err := file.Stat()
	if err == nil && routed && !info.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err == nil && created && !routed {
		// A file just created exists after a power cut only once its
		// directory entry is synced. A file per source leaves that to the
		// syncfs that syncs its lines (Writer.syncAll): a directory sync
		// per new file would stall the writer behind the journal.
		err = statefile.SyncDir(filepath.Dir(f.path))
	}
	if err != nil {
		file.Close()
		return fmt.Errorf("open %s: %w", f.path, err)
	}
	if f.live != nil {
		f.live.Close()
	}
	f.live, f.inode, f.dirty = file, Inode(info), false
	f.size = info.Size()
	return nil
}

// close closes both descriptors; the next write opens them again.
func (f *logFile) close() error {
	err := f.lj.Close()
	if f.live != nil {
		err = errors.Join(err, f.live.Close())
		f.live = nil
	}
	return err
}

// Inode is the inode number of a file, 0 where the system has none.
func Inode(info os.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
