package cron

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	robfig "github.com/robfig/cron/v3"
	"k8s.io/utils/clock"
)

// Errors returned by the Crontab, matched with errors.Is.
var (
	// ErrInvalidSpec is wrapped by Add for a spec that does not parse or
	// never fires.
	ErrInvalidSpec = errors.New("invalid cron spec")
	// ErrStopped is returned by Start and Add after Stop.
	ErrStopped = errors.New("crontab is stopped")
)

// parser accepts 5 fields (minute first), 6 fields (seconds first),
// descriptors such as @hourly and "@every 1h30m", and a leading
// CRON_TZ=<zone> or TZ=<zone>.
var parser = robfig.NewParser(robfig.SecondOptional | robfig.Minute | robfig.Hour |
	robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Trigger says that an entry is due.
type Trigger struct {
	Owner string
	Name  string
	// Scheduled is the time the entry was due, not when it was sent.
	Scheduled time.Time
}

// Options configure a Crontab. The zero value means every default.
type Options struct {
	// Clock tells time and makes timers. Default: the real clock.
	Clock clock.Clock
}

// EntryStatus describes one entry, for dumps.
type EntryStatus struct {
	Owner string    `json:"owner" yaml:"owner"`
	Name  string    `json:"name" yaml:"name"`
	Spec  string    `json:"spec" yaml:"spec"`
	Next  time.Time `json:"next" yaml:"next"`
	// Running is true from its trigger until Done.
	Running bool `json:"running" yaml:"running"`
	// Fired counts triggers sent, Skipped those skipped because the
	// previous run was still running.
	Fired   uint64 `json:"fired" yaml:"fired"`
	Skipped uint64 `json:"skipped" yaml:"skipped"`
}

// Stats counts triggers over the Crontab's life, removed entries included.
type Stats struct {
	Fired   uint64 `json:"fired" yaml:"fired"`
	Skipped uint64 `json:"skipped" yaml:"skipped"`
}

type key struct{ owner, name string }

type entry struct {
	spec    string
	sched   robfig.Schedule
	next    time.Time
	fired   uint64
	skipped uint64
}

// Crontab turns cron entries into Triggers. It is safe for concurrent use.
// Start runs its one goroutine; Stop ends it and waits for running
// triggers to be marked Done.
type Crontab struct {
	clock    clock.Clock
	triggers chan Trigger
	wake     chan struct{} // capacity 1: entries changed
	stop     chan struct{} // closed by Stop
	loopDone chan struct{} // closed when Start's loop has returned
	idle     chan struct{} // closed when stopping and nothing is in flight
	stopOnce sync.Once

	mu sync.Mutex
	// Guarded by mu. inflight holds the scheduled time of every trigger
	// sent or about to be sent and not yet Done; an entry in it is running.
	// It may hold keys of removed entries, which Stop still waits for.
	entries  map[key]*entry
	inflight map[key]time.Time
	started  bool
	stopping bool
	stats    Stats
}

// New returns a Crontab with opts' zero fields set to their defaults. It
// starts no goroutine.
func New(opts Options) *Crontab {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Crontab{
		clock:    opts.Clock,
		triggers: make(chan Trigger),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		idle:     make(chan struct{}),
		entries:  make(map[key]*entry),
		inflight: make(map[key]time.Time),
	}
}

// Validate checks spec the way Add does, without adding anything: for
// validating a resource before it is accepted.
func Validate(spec string) error {
	_, err := parse(spec)
	return err
}

func parse(spec string) (sched robfig.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("parse cron spec %q: %v: %w", spec, r, ErrInvalidSpec)
		}
	}()
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("parse cron spec %q: it is empty; want 5 fields (minute hour day-of-month month day-of-week), 6 fields (seconds first) or a descriptor such as @hourly: %w", spec, ErrInvalidSpec)
	}
	sched, err = parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse cron spec %q: %v; want 5 fields (minute hour day-of-month month day-of-week), 6 fields (seconds first) or a descriptor such as @hourly, optionally after CRON_TZ=<zone>: %w", spec, err, ErrInvalidSpec)
	}
	// robfig returns the zero time when nothing matches within five years.
	if sched.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("parse cron spec %q: it matches no date (such as February 30th): %w", spec, ErrInvalidSpec)
	}
	return sched, nil
}

// Add adds or replaces the entry (owner, name). An invalid spec is an
// error naming the spec and why, wrapping ErrInvalidSpec, and leaves any
// existing entry as it was. A replaced entry keeps its running state.
func (m *Crontab) Add(owner, name, spec string) error {
	if owner == "" || name == "" {
		return fmt.Errorf("add cron entry %q/%q: owner and name must not be empty", owner, name)
	}
	sched, err := parse(spec)
	if err != nil {
		return fmt.Errorf("add cron entry %s/%s: %w", owner, name, err)
	}
	m.mu.Lock()
	if m.stopping {
		m.mu.Unlock()
		return fmt.Errorf("add cron entry %s/%s: %w", owner, name, ErrStopped)
	}
	m.entries[key{owner, name}] = &entry{spec: spec, sched: sched, next: sched.Next(m.clock.Now())}
	m.mu.Unlock()
	m.poke()
	return nil
}

// Remove removes one entry; a run in progress still has to be marked Done.
func (m *Crontab) Remove(owner, name string) {
	m.mu.Lock()
	delete(m.entries, key{owner, name})
	m.mu.Unlock()
	m.poke()
}

// RemoveOwner removes every entry of owner; runs in progress still have to
// be marked Done. A trigger already being handed over when RemoveOwner is
// called may still arrive.
func (m *Crontab) RemoveOwner(owner string) {
	m.mu.Lock()
	for k := range m.entries {
		if k.owner == owner {
			delete(m.entries, k)
		}
	}
	m.mu.Unlock()
	m.poke()
}

func (m *Crontab) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Triggers delivers due entries. It is closed by Stop.
func (m *Crontab) Triggers() <-chan Trigger { return m.triggers }

// Done marks the run of t finished, so the entry may fire again. Done for
// a trigger already marked, or of a removed entry, is harmless.
func (m *Crontab) Done(t Trigger) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{t.Owner, t.Name}
	if at, ok := m.inflight[k]; ok && at.Equal(t.Scheduled) {
		delete(m.inflight, k)
		m.closeIdleIfDone()
	}
}

// closeIdleIfDone signals Stop; m.mu must be held.
func (m *Crontab) closeIdleIfDone() {
	if m.stopping && len(m.inflight) == 0 {
		select {
		case <-m.idle:
		default:
			close(m.idle)
		}
	}
}

// Start sends triggers until ctx ends or Stop is called, then returns nil.
// It returns ErrStopped after Stop, and an error if already started.
func (m *Crontab) Start(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.stopping:
		m.mu.Unlock()
		return fmt.Errorf("start crontab: %w", ErrStopped)
	case m.started:
		m.mu.Unlock()
		return errors.New("start crontab: already started")
	}
	m.started = true
	m.mu.Unlock()
	defer close(m.loopDone)

	// outbox holds due triggers not yet received, oldest first.
	var outbox []Trigger
	for {
		now := m.clock.Now()
		m.mu.Lock()
		outbox = m.dropRemoved(outbox)
		var earliest time.Time
		for k, e := range m.entries {
			if !e.next.After(now) {
				if _, running := m.inflight[k]; running {
					e.skipped++
					m.stats.Skipped++
				} else {
					m.inflight[k] = e.next
					outbox = append(outbox, Trigger{Owner: k.owner, Name: k.name, Scheduled: e.next})
					e.fired++
					m.stats.Fired++
				}
				e.next = e.sched.Next(now)
			}
			if !e.next.IsZero() && (earliest.IsZero() || e.next.Before(earliest)) {
				earliest = e.next
			}
		}
		m.mu.Unlock()
		sort.SliceStable(outbox, func(i, j int) bool { return triggerLess(outbox[i], outbox[j]) })

		var timerC <-chan time.Time
		var timer clock.Timer
		if !earliest.IsZero() {
			timer = m.clock.NewTimer(earliest.Sub(now))
			timerC = timer.C()
		}
		var out chan<- Trigger
		var first Trigger
		if len(outbox) > 0 {
			out, first = m.triggers, outbox[0]
		}
		stopping := false
		select {
		case out <- first:
			outbox = outbox[1:]
		case <-timerC:
		case <-m.wake:
		case <-ctx.Done():
			stopping = true
		case <-m.stop:
			stopping = true
		}
		if timer != nil {
			timer.Stop()
		}
		if stopping {
			m.mu.Lock()
			for _, t := range outbox {
				delete(m.inflight, key{t.Owner, t.Name})
			}
			m.closeIdleIfDone()
			m.mu.Unlock()
			return nil
		}
	}
}

func triggerLess(a, b Trigger) bool {
	switch {
	case !a.Scheduled.Equal(b.Scheduled):
		return a.Scheduled.Before(b.Scheduled)
	case a.Owner != b.Owner:
		return a.Owner < b.Owner
	}
	return a.Name < b.Name
}

// dropRemoved forgets undelivered triggers of removed entries; m.mu must
// be held.
func (m *Crontab) dropRemoved(outbox []Trigger) []Trigger {
	kept := outbox[:0]
	for _, t := range outbox {
		k := key{t.Owner, t.Name}
		if _, ok := m.entries[k]; ok {
			kept = append(kept, t)
			continue
		}
		delete(m.inflight, k)
	}
	return kept
}

// Stop stops sending triggers, drops those not yet received, waits until
// every received trigger is marked Done or ctx ends, and closes Triggers.
// It returns an error naming the runs still in progress when ctx ended.
// Calling it again is safe.
func (m *Crontab) Stop(ctx context.Context) error {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		m.stopping = true
		started := m.started
		m.mu.Unlock()
		close(m.stop)
		if started {
			<-m.loopDone
		}
		// No sender is left: receivers ranging over Triggers end.
		close(m.triggers)
		m.mu.Lock()
		m.closeIdleIfDone()
		m.mu.Unlock()
	})
	select {
	case <-m.idle:
		return nil
	case <-ctx.Done():
	}
	m.mu.Lock()
	var running []string
	for k := range m.inflight {
		running = append(running, k.owner+"/"+k.name)
	}
	m.mu.Unlock()
	sort.Strings(running)
	return fmt.Errorf("stop crontab: runs still in progress: %s: %w", strings.Join(running, ", "), ctx.Err())
}

// Entries describes every entry, sorted by owner and name.
func (m *Crontab) Entries() []EntryStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]EntryStatus, 0, len(m.entries))
	for k, e := range m.entries {
		_, running := m.inflight[k]
		out = append(out, EntryStatus{Owner: k.owner, Name: k.name, Spec: e.spec, Next: e.next, Running: running, Fired: e.fired, Skipped: e.skipped})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Owner != out[j].Owner {
			return out[i].Owner < out[j].Owner
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Stats returns the counters of triggers fired and skipped.
func (m *Crontab) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}
