// Package hooks speaks the shell-operator hook protocol: it parses the output
// of `hook --config`, builds binding contexts in shell-operator's JSON shapes,
// runs hook executables with their files and minimal environment, and reads
// back values patches, object patches and metrics.
//
// The pieces, in the order a package uses them:
//
//   - Discover lists a package's hooks; Load runs `hook --config` for each
//     and parses it (ParseConfig), resolving kinds through a REST mapper
//     (Config.ResolveKinds, NewRESTMapper; Config.ResolveKindsLater lets a
//     kind whose API group is not served yet wait). Every kubernetes binding carries
//     the kubeevents.Config its monitor needs, with ID
//     "<package key>/<hook>/<binding>" (MonitorID), or ".../<binding>[<i>]"
//     when bindings of the hook share a name.
//   - A Trigger says why a hook runs. NewRunTask wraps a hook and its
//     triggers into a queue.Task; consecutive tasks of one hook merge, their
//     binding contexts concatenated and consecutive contexts of one group
//     compacted to the last. Binding contexts and snapshots (from a
//     Snapshots, kubeevents.Monitors) are built when the task runs.
//   - Runner.Run executes one run: a temporary directory with the protocol's
//     files, the package directory as working directory, a minimal
//     environment, a timeout that kills the hook's process group, output
//     logged line by line (to RunInput.Logger or TaskDeps.Logger, with the
//     package, hook, binding, queue and run ID; at most OutputBurst lines
//     and then OutputLinesPerSecond per hook, the rest counted), the
//     hook's last lines kept for the dump (Runner.Output), and a rate
//     limit from the hook's settings.
//   - RunTask.Execute applies the results: object patches through an
//     ObjectPatcher even when the hook failed; values patches through a
//     ValuesSource (ValuesStore validates them against values.schema.json
//     and persists config values through a SettingsWriter such as
//     GadgetPackageSettings); metrics on a Prometheus registry (Metrics).
//
// It does not watch Kubernetes (kubeevents/ does), apply object patches
// (pkg/objectpatch does), choose queue names (queue/ does) or schedule cron
// triggers (scheduler/cron does).
package hooks
