// Package queue runs tasks in named FIFO queues, one worker each, with
// retries under capped exponential backoff, uniqueness, compaction of
// mergeable tasks, cancellation scopes, metrics and a YAML dump.
//
// It knows nothing of packages or hooks: tasks are opaque behind the Task
// interface.
package queue
