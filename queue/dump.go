package queue

import (
	"fmt"
	"sort"
	"time"

	"gopkg.in/yaml.v3"
)

// Dump is a snapshot of every queue, for `gadgetpm dump` and the debug
// server. It carries json and yaml tags with the same names so it reads
// the same whichever encoder embeds it.
type Dump struct {
	// Queues are sorted by name.
	Queues []QueueDump `json:"queues" yaml:"queues"`
}

// QueueDump is one queue.
type QueueDump struct {
	Name string `json:"name" yaml:"name"`
	// Length is the number of pending tasks, the running one excluded.
	Length  int          `json:"length" yaml:"length"`
	Running *RunningTask `json:"running,omitempty" yaml:"running,omitempty"`
	// Pending tasks in the order they will run.
	Pending []PendingTask `json:"pending,omitempty" yaml:"pending,omitempty"`
	// Failed tasks, oldest first, at most Options.FailedLimit.
	Failed []FailedTask `json:"failed,omitempty" yaml:"failed,omitempty"`
}

// RunningTask is the task a queue's worker is running.
type RunningTask struct {
	Name  string    `json:"name" yaml:"name"`
	Since time.Time `json:"since" yaml:"since"`
	// Attempt counts from 1.
	Attempt int `json:"attempt" yaml:"attempt"`
}

// PendingTask is a task waiting to start or to be retried.
type PendingTask struct {
	Name       string    `json:"name" yaml:"name"`
	EnqueuedAt time.Time `json:"enqueuedAt" yaml:"enqueuedAt"`
	// Attempts made so far; 0 until it first runs.
	Attempts int `json:"attempts" yaml:"attempts"`
	// NextRetry is set while the task waits for its next attempt.
	NextRetry *time.Time `json:"nextRetry,omitempty" yaml:"nextRetry,omitempty"`
	// LastError is the error of its last attempt.
	LastError string `json:"lastError,omitempty" yaml:"lastError,omitempty"`
}

// FailedTask is a task that used up its attempts or failed terminally.
type FailedTask struct {
	Name       string    `json:"name" yaml:"name"`
	EnqueuedAt time.Time `json:"enqueuedAt" yaml:"enqueuedAt"`
	FailedAt   time.Time `json:"failedAt" yaml:"failedAt"`
	Attempts   int       `json:"attempts" yaml:"attempts"`
	Error      string    `json:"error" yaml:"error"`
}

// YAML renders the dump.
func (d Dump) YAML() ([]byte, error) {
	out, err := yaml.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("marshal queue dump: %w", err)
	}
	return out, nil
}

// Dump returns a snapshot of every live queue. Removed queues are not
// shown; after Stop the stopped queues are, with their failed lists.
func (s *Service) Dump() Dump {
	s.mu.Lock()
	qs := make([]*queue, 0, len(s.queues))
	for _, q := range s.queues {
		qs = append(qs, q)
	}
	s.mu.Unlock()
	sort.Slice(qs, func(i, j int) bool { return qs[i].name < qs[j].name })

	d := Dump{Queues: make([]QueueDump, 0, len(qs))}
	for _, q := range qs {
		d.Queues = append(d.Queues, q.dump(s.at))
	}
	return d
}

// dump copies the queue's state under its lock; at turns the queue's
// durations since the Service's epoch into times.
func (q *queue) dump(at func(time.Duration) time.Time) QueueDump {
	q.mu.Lock()
	defer q.mu.Unlock()
	qd := QueueDump{Name: q.name, Length: q.pending.len()}
	if q.running {
		qd.Running = &RunningTask{Name: q.cur.name, Since: at(q.runningSince), Attempt: q.cur.attempts}
	}
	for i := range q.pending.len() {
		it := q.pending.at(i)
		p := PendingTask{Name: it.name, EnqueuedAt: at(it.enqueuedAt), Attempts: it.attempts, LastError: it.lastErr}
		if it.nextRetry != 0 {
			t := at(it.nextRetry)
			p.NextRetry = &t
		}
		qd.Pending = append(qd.Pending, p)
	}
	for _, f := range q.failed {
		qd.Failed = append(qd.Failed, FailedTask{
			Name: f.name, EnqueuedAt: at(f.enqueuedAt), FailedAt: at(f.failedAt), Attempts: f.attempts, Error: f.err,
		})
	}
	return qd
}
