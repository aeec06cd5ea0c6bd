package packagetest

import (
	"fmt"
	"strings"
)

// CronTabCRD is the classic CronTab of the Kubernetes documentation
// (stable.example.com/v1, namespaced, short name ct), as a chart ships it
// in crds/crontab.yaml.
const CronTabCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string}
              image: {type: string}
              replicas: {type: integer}
`

// CRD returns a CustomResourceDefinition of a namespaced kind served at
// v1 in group, whose objects may hold any fields; plural is its resource
// name, the singular is kind in lower case.
func CRD(group, kind, plural string, shortNames ...string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[3]s.%[1]s
spec:
  group: %[1]s
  scope: Namespaced
  names:
    plural: %[3]s
    singular: %[4]s
    kind: %[2]s
    shortNames: [%[5]s]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, group, kind, plural, strings.ToLower(kind), strings.Join(shortNames, ", "))
}
