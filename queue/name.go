package queue

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
