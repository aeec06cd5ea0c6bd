package queue

import "context"

// Task is one unit of work in a queue.
//
// Name must be stable for the task's lifetime: it identifies the task for
// the Unique option and in dumps (e.g. "startup", "hook-run hooks/10-sync").
// Execute runs the work; it must return when ctx is done. A nil error
// completes the task; any other error schedules a retry, unless the error
// is terminal (see Terminal).
type Task interface {
	Name() string
	Execute(ctx context.Context) error
}

// Mergeable is implemented by tasks that may be compacted: when two
// consecutive pending tasks in one queue return the same non-empty MergeKey,
// the queue replaces them with first.Merge(second), whose payload is the
// first's followed by the second's (hook runs of one hook concatenate their
// binding contexts this way). Merge must not modify either task. A Merge
// that returns its receiver refuses next (a size cap, say): the run of
// merged tasks ends there, and next stays pending, to start a run of its
// own.
type Mergeable interface {
	Task
	MergeKey() string
	Merge(next Task) Task
}
