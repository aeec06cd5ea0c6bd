// Package cron delivers time triggers for schedule bindings and scheduled
// Traces, on robfig/cron/v3: 5- and 6-field specs, descriptors and CRON_TZ,
// entries grouped by owner, triggers on a channel, overlapping runs skipped.
//
// A Crontab keeps entries keyed by (owner, name). When an entry is due it
// sends a Trigger on Triggers; the receiver calls Done when it has handled
// it. Until then the entry counts as running, and a further due time is
// skipped and counted instead of stacked. Missed times (the process was
// busy or stopped) are not caught up: after a trigger the next time is the
// first one after now.
//
// It does not run the work a trigger stands for.
package cron
