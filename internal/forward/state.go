package forward

import (
	"fmt"

	"aggregator/internal/statefile"
)

func (f *Forwarder) load(l *lane) (checkpoint, error) {
	var cp checkpoint
	from, err := statefile.Load(l.checkFile, &cp)
	if err != nil {
		return cp, fmt.Errorf("forwarding checkpoint: %w; to forward again from the oldest file there is, remove %s and its .prev (a central recognises the lines it holds of its edges' last %d files)", err, l.checkFile, 8)
	}
	if from == statefile.Previous {
		f.log.Warn("forwarding checkpoint missing or damaged: resuming from the one saved before it", "file", l.checkFile)
	}
	return cp, nil
}

// save writes a lane's checkpoint, durably.
func (f *Forwarder) save(l *lane, cp checkpoint) error { return statefile.Save(l.checkFile, cp) }
