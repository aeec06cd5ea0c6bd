package testlog

import (
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// Lines holds logged lines; it is safe for concurrent use.
type Lines struct {
	mu    sync.Mutex
	lines []string
}

// Logger returns a logger writing into l at up to verbosity (0 for Info
// only), each line as funcr formats it: `"msg"="..." "key"=value ...`.
func (l *Lines) Logger(verbosity int) logr.Logger {
	return funcr.New(l.add, funcr.Options{Verbosity: verbosity})
}

func (l *Lines) add(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, prefix+" "+args)
}

// Get returns a copy of the lines so far.
func (l *Lines) Get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// Count returns how many lines contain every one of parts.
func (l *Lines) Count(parts ...string) int {
	n := 0
lines:
	for _, line := range l.Get() {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		n++
	}
	return n
}
