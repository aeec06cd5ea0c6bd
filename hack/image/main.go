// Command image writes an image tarball with internal/ociimage; hack/image.sh
// runs it for the gadgetpm and pause images.
//
//	go run ./hack/image -tag gadgetpm.local/gadgetpm:dev -base rootfs.tar \
//	  -file bin/gadgetpm:/usr/local/bin/gadgetpm:0755 -user 65532:65532 \
//	  -entrypoint /usr/local/bin/gadgetpm -env PATH=/usr/local/bin:/usr/bin:/bin \
//	  -out gadgetpm.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/gadgetpm/gadgetpm/internal/ociimage"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image: error:", err)
		os.Exit(1)
	}
}

func run() error {
	var spec ociimage.Spec
	var files, env, labels list
	var entrypoint, out string
	flag.StringVar(&spec.Tag, "tag", "", "image name and tag (required)")
	flag.StringVar(&spec.BaseTar, "base", "", "tar file (plain or gzip) used as the first layer")
	flag.Var(&files, "file", "SRC:PATH:MODE, a file of the second layer (repeatable; MODE octal)")
	flag.StringVar(&spec.User, "user", "", "user the image runs as (uid:gid)")
	flag.StringVar(&entrypoint, "entrypoint", "", "entrypoint, words separated by spaces")
	flag.Var(&env, "env", "NAME=VALUE of the image's environment (repeatable)")
	flag.Var(&labels, "label", "KEY=VALUE label (repeatable)")
	flag.StringVar(&spec.WorkingDir, "workdir", "/", "working directory")
	flag.StringVar(&out, "out", "", "image tarball to write (required)")
	flag.Parse()
	if spec.Tag == "" || out == "" {
		return fmt.Errorf("-tag and -out are required (see -help)")
	}
	for _, f := range files {
		parts := strings.Split(f, ":")
		if len(parts) != 3 {
			return fmt.Errorf("-file %q: want SRC:PATH:MODE, e.g. bin/gadgetpm:/usr/local/bin/gadgetpm:0755", f)
		}
		mode, err := strconv.ParseInt(parts[2], 8, 64)
		if err != nil {
			return fmt.Errorf("-file %q: mode %q is not octal: %w", f, parts[2], err)
		}
		spec.Files = append(spec.Files, ociimage.File{Source: parts[0], Path: parts[1], Mode: mode})
	}
	if entrypoint != "" {
		spec.Entrypoint = strings.Fields(entrypoint)
	}
	spec.Env = env
	if len(labels) > 0 {
		spec.Labels = map[string]string{}
		for _, l := range labels {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				return fmt.Errorf("-label %q: want KEY=VALUE", l)
			}
			spec.Labels[k] = v
		}
	}
	digest, err := ociimage.Write(spec, out)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s\n", spec.Tag, digest, out)
	return nil
}
