// Package queue runs tasks in named FIFO queues, one worker each, with
// retries under capped exponential backoff, uniqueness, compaction of
// mergeable tasks, cancellation scopes, metrics and a YAML dump.
//
// Guarantees of a Service:
//
//   - A queue is created by the first Enqueue that names it and runs its
//     tasks one at a time, in the order they were enqueued.
//   - A failed task stays at the head of its queue and is retried after
//     BackoffBase, doubling up to BackoffCap, shortened by up to Jitter.
//     After its attempt limit, or at once for an error wrapped by Terminal,
//     it moves to the queue's failed list, a Failed event is sent and the
//     queue moves on. Queues never wait for each other.
//   - Unique skips a task whose name is already pending; its OnDone then
//     rides on the pending twin.
//   - Consecutive pending tasks with the same MergeKey (and the same scope
//     and attempt limit) are merged into one when the first is about to
//     start; the merged task ends in one event under its own name. A
//     Merge that returns its receiver ends the run there; the refused
//     task stays pending, in place.
//   - A task whose scope ends is dropped, or its running attempt's context
//     cancelled, and reported Cancelled; its OnDone is not called.
//   - Every other task ends in exactly one Event: Failed or Cancelled,
//     or, with Options.SucceededEvents set, Succeeded. Successes are not
//     reported by default (OnDone tells a caller its task succeeded).
//   - Enqueue takes no Service-wide lock; a worker settles a plain
//     success and picks the next task under one lock acquisition; pending
//     tasks are held by value in a ring whose array is reused, and given
//     to the next busy queue when this one goes idle, so queues allocate
//     nothing per task.
//   - Remove and Stop drop pending tasks (reported Cancelled), let the
//     running one finish until their ctx ends, then cancel it, and wait for
//     the worker. Stop is safe to call twice.
//   - Stop never hangs on the Events reader: events beyond the channel's
//     buffer are delivered while the reader keeps taking them, and dropped
//     (and counted in Stop's error) once ctx ends or the reader has taken
//     none for Options.EventStall.
//   - No callback — task methods, OnDone, metrics — runs under a lock.
//   - Task times are exact clock reads, except during bursts of short
//     tasks, when they come from a cached time refreshed every millisecond
//     by a goroutine that stops once the burst is over (see burstClock and
//     docs/queues.md).
//
// It knows nothing of packages or hooks: tasks are opaque behind the Task
// interface. PackageQueueName is the one function that names package
// queues, and Owner (given with OwnedBy, reported in every Event of the
// task) tells consumers whose task ended without parsing queue names.
package queue
