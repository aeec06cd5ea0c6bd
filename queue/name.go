package queue

// Owner is the package a task belongs to (its key, "<ns>.<name>") and
// the custom queue of one of its hooks ("" for the package's main queue).
// Tasks enqueued with OwnedBy carry it into their Events, so that
// consumers read whose task ended instead of parsing queue names back.
type Owner struct {
	Package string
	Custom  string
}

// QueueName is the name of the owner's queue (PackageQueueName).
func (o Owner) QueueName() string { return PackageQueueName(o.Package, o.Custom) }

// PackageQueueName is the one place queue names of packages are built: a
// package's main queue is its key ("<ns>.<name>"), and a custom queue named
// by one of its hooks is "<ns>.<name>/<queue>". An empty custom name means
// the main queue.
func PackageQueueName(pkgKey, custom string) string {
	if custom == "" {
		return pkgKey
	}
	return pkgKey + "/" + custom
}
