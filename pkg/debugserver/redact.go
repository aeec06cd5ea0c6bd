package debugserver

import (
	"encoding/json"
	"strings"

	"github.com/gadgetpm/gadgetpm/pkg/dump"
)

// Redacted replaces a secret value in what the debug server answers.
const Redacted = "<redacted>"

// lastApplied is the annotation kubectl apply leaves on an object: a copy
// of the object as applied, a Secret's data included.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// SecretKey reports whether a key of a package's values names a credential:
// the key, lowercased and with "-" and "_" removed, contains password,
// passwd, secret, token, apikey, privatekey, credential or auth. The rule
// errs on the side of hiding: "author" and "secretName" match too.
func SecretKey(key string) bool {
	k := strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(key))
	for _, w := range [...]string{"password", "passwd", "secret", "token", "apikey", "privatekey", "credential", "auth"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// RedactValues returns a copy of a package's values in which the value of
// every key that SecretKey matches, and of every path in secret (the
// properties the package's values.schema.json marks "x-secret": true,
// segments as in loader.Package.SecretValues, dump.AnyKey a wildcard), is
// Redacted, whatever it holds: a string, a number, a whole map or list.
// Keys stay, and so do
// their siblings; maps and lists are walked to any depth. A secret that is
// null or "" is shown as it is, so the dump still tells unset from set.
// values is not changed.
func RedactValues(values map[string]any, secret [][]string) map[string]any {
	if values == nil {
		return nil
	}
	// The JSON round trip turns every map and list type into
	// map[string]any and []any, and copies.
	js, err := json.Marshal(values)
	var plain map[string]any
	if err == nil {
		err = json.Unmarshal(js, &plain)
	}
	if err != nil {
		// Fail closed: nothing of values that cannot be walked.
		return map[string]any{"error": "values not shown: " + err.Error()}
	}
	return redactWalk(plain, secret).(map[string]any)
}

// redactWalk redacts v in place; paths are what is left of the secret
// paths below v.
func redactWalk(v any, paths [][]string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if SecretKey(k) {
				v[k] = redactValue(child)
				continue
			}
			hit, below := descend(paths, k)
			if hit {
				v[k] = redactValue(child)
				continue
			}
			v[k] = redactWalk(child, below)
		}
	case []any:
		hit, below := descend(paths, dump.AnyKey)
		for i, child := range v {
			if hit {
				v[i] = redactValue(child)
				continue
			}
			v[i] = redactWalk(child, below)
		}
	}
	return v
}

// descend matches one key against the first segment of each path: hit
// when a path ends there, below are the rests of the longer ones.
func descend(paths [][]string, key string) (hit bool, below [][]string) {
	for _, p := range paths {
		if len(p) == 0 || (p[0] != key && p[0] != dump.AnyKey) {
			continue
		}
		if len(p) == 1 {
			return true, nil
		}
		below = append(below, p[1:])
	}
	return false, below
}

func redactValue(v any) any {
	if v == nil || v == "" {
		return v
	}
	return Redacted
}

// redactDump redacts the values of every package in d.
func redactDump(d Dump) Dump {
	pkgs := make([]PackageDump, len(d.Packages))
	for i, p := range d.Packages {
		pkgs[i] = redactPackage(p)
	}
	d.Packages = pkgs
	return d
}

func redactPackage(p PackageDump) PackageDump {
	p.Values = RedactValues(p.Values, p.SecretValues)
	return p
}

// redactSnapshots hides what Secrets hold in a hook's snapshots: the
// values of data and stringData (their keys stay), the last-applied
// annotation, and the hook's filter result, which is cut from the Secret.
// Other objects are shown as they are.
func redactSnapshots(s dump.Snapshots) dump.Snapshots {
	out := make(dump.Snapshots, len(s))
	for binding, objs := range s {
		red := make([]dump.Object, len(objs))
		for i, o := range objs {
			red[i] = o
			if o.Object == nil || o.Object.GetKind() != "Secret" || o.Object.GetAPIVersion() != "v1" {
				continue
			}
			obj := o.Object.DeepCopy()
			for _, field := range []string{"data", "stringData"} {
				if m, ok := obj.Object[field].(map[string]any); ok {
					for k, v := range m {
						m[k] = redactValue(v)
					}
				}
			}
			if ann := obj.GetAnnotations(); ann[lastApplied] != "" {
				ann[lastApplied] = Redacted
				obj.SetAnnotations(ann)
			}
			red[i].Object = obj
			if len(o.FilterResult) > 0 {
				red[i].FilterResult = json.RawMessage(`"` + Redacted + `"`)
			}
		}
		out[binding] = red
	}
	return out
}
