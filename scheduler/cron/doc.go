// Package cron delivers time triggers for schedule bindings and scheduled
// Traces, on robfig/cron/v3: 5- and 6-field specs, descriptors and CRON_TZ,
// entries grouped by owner, triggers on a channel, overlapping runs skipped.
//
// It does not run the work a trigger stands for.
package cron
