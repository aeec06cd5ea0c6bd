package queue

import (
	"errors"

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
