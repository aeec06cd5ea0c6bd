package queue

import (
	"errors"
	"fmt"

	"github.com/gadgetpm/gadgetpm/queue/outbox"
)

// Errors returned by the Service, matched with errors.Is.
var (
	// ErrStopped is returned by Enqueue after Stop has begun, and is the
	// cause of tasks dropped or cancelled by Stop.
	ErrStopped = errors.New("queue service is stopped")
	// ErrRemoved is the cause of tasks dropped or cancelled by Remove.
	ErrRemoved = errors.New("queue was removed")
	// ErrEmptyQueueName is returned by Enqueue for an empty queue name.
	ErrEmptyQueueName = errors.New("queue name is empty")
	// ErrNilTask is returned by Enqueue for a nil task.
	ErrNilTask = errors.New("task is nil")
	// ErrInvalidOption is returned by Enqueue for an option out of range.
	ErrInvalidOption = errors.New("invalid enqueue option")
	// ErrReaderStalled is wrapped by Stop's error when it dropped events
	// because the Events reader took none for Options.EventStall.
	ErrReaderStalled = outbox.ErrStalled
)

// Terminal marks err as not worth retrying: a task whose Execute returns
// an error wrapped by Terminal goes to the failed list at once, whatever
// attempts it has left. Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err: err}
}

// IsTerminal reports whether err, or an error it wraps, was marked by
// Terminal.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}

type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// CancelledAtStopError is the part of Stop's error that says which
// running tasks were cancelled because they outlived Stop's context. It
// is what an ordered stop with a deadline does, not a fault: callers
// that treat it as such (a process stopping on SIGTERM) find it with
// errors.As and log it instead of failing.
type CancelledAtStopError struct {
	// Tasks are the cancelled tasks, "<task> in <queue>".
	Tasks []string
	// Err is the context's error.
	Err error
}

func (e *CancelledAtStopError) Error() string {
	return fmt.Sprintf("cancel running tasks %v: %v", e.Tasks, e.Err)
}

func (e *CancelledAtStopError) Unwrap() error { return e.Err }
