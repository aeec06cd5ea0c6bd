// Package enricher adds to every record that carries a mount namespace id
// (a field of kind mntns_id) what that namespace stands for: the container
// id read from the cgroup path of a process in it, the pod and Kubernetes
// namespace when a PodResolver knows them, and — for data sources that lack
// them — the pid and comm of a process in it.
//
// Namespaces are learnt by scanning /proc; a namespace not yet known
// triggers a rescan, at most once per RescanInterval, so a storm of events
// from short-lived namespaces cannot turn into a storm of /proc scans. A
// namespace with no process left at the scan that looked for it is
// remembered as gone for the rest of the run (namespace ids are not reused
// while anything holds them) and never triggers a scan again.
package enricher
