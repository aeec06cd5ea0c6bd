package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VerifyMode says when a package's Helm provenance file must be checked.
// +kubebuilder:validation:Enum=Never;IfPossible;Always
type VerifyMode string

const (
	// VerifyNever skips provenance checks; the digest is still verified.
	VerifyNever VerifyMode = "Never"
	// VerifyIfPossible checks provenance when the repository has a .prov
	// file for the chosen version and accepts the package without one.
	VerifyIfPossible VerifyMode = "IfPossible"
	// VerifyAlways refuses a package without a valid provenance file.
	VerifyAlways VerifyMode = "Always"
)

// SecretReference names a Secret in a given namespace.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Secret. A PackageRepository is cluster-scoped, so its
	// Secrets are read only from the cluster resource namespace (the
	// operator's namespace, or --cluster-resource-namespace); empty means
	// that namespace and any other is refused.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// Verification configures Helm provenance checks.
// +kubebuilder:validation:XValidation:rule="self.mode == 'Never' || has(self.keyringSecretRef)",message="keyringSecretRef is required when mode is IfPossible or Always"
type Verification struct {
	// Mode says when provenance is checked. Defaults to Never.
	// +kubebuilder:default=Never
	// +optional
	Mode VerifyMode `json:"mode,omitempty"`
	// KeyringSecretRef names a Secret whose key "pubring.gpg" (or Key) holds
	// the public keyring that signed the packages.
	// +optional
	KeyringSecretRef *SecretReference `json:"keyringSecretRef,omitempty"`
	// Key in the keyring Secret. Defaults to "pubring.gpg".
	// +kubebuilder:default=pubring.gpg
	// +optional
	Key string `json:"key,omitempty"`
}

// PackageRepositorySpec is where gadget packages come from.
type PackageRepositorySpec struct {
	// URL of the repository: an https:// or http:// Helm chart repository
	// (index.yaml beside the .tgz files), a file:// directory laid out the
	// same way, or an oci:// registry path holding one chart per package.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://') || self.startsWith('file://') || self.startsWith('oci://')",message="url must start with https://, http://, file:// or oci://"
	URL string `json:"url"`

	// Interval between index syncs. Defaults to 10m.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +optional
	Interval metav1.Duration `json:"interval,omitempty"`

	// Timeout of one index fetch or package download. Defaults to 60s.
	// +kubebuilder:default="60s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +optional
	Timeout metav1.Duration `json:"timeout,omitempty"`

	// SecretRef names a Secret with the keys "username" and "password" used
	// for basic auth (http, https) or as registry credentials (oci).
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// CABundle is a PEM bundle of certificate authorities trusted for an
	// https:// or oci:// repository, on top of the system's.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// Verify configures Helm provenance checks of downloaded packages.
	// +optional
	Verify *Verification `json:"verify,omitempty"`

	// Insecure allows an http:// URL (and plain HTTP to an oci://
	// registry). Credentials are never sent over plain HTTP.
	// +optional
	Insecure bool `json:"insecure,omitempty"`

	// Suspend stops syncing; installed packages keep running.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// RepositoryPackage is one package found in a repository index.
type RepositoryPackage struct {
	// Name of the package (the chart name).
	Name string `json:"name"`
	// Versions found, newest first, at most 20.
	// +kubebuilder:validation:MaxItems=20
	// +optional
	Versions []string `json:"versions,omitempty"`
}

// PackageRepositoryStatus is what the last sync found.
type PackageRepositoryStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (the index was read), Reconciling, Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// LastSyncTime is when the index was last read successfully.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// IndexDigest is the sha256 of the index last read.
	// +optional
	IndexDigest string `json:"indexDigest,omitempty"`
	// PackageCount is the number of packages in the index.
	// +optional
	PackageCount int32 `json:"packageCount,omitempty"`
	// Packages found in the index, by name, at most 500.
	// +kubebuilder:validation:MaxItems=500
	// +optional
	Packages []RepositoryPackage `json:"packages,omitempty"`
}

// PackageRepository is a Helm chart repository or OCI registry that serves
// gadget packages.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=pkgrepo;pkgrepos,categories=gadgetpm
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.spec.url`
// +kubebuilder:printcolumn:name="READY",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="PACKAGES",type=integer,JSONPath=`.status.packageCount`
// +kubebuilder:printcolumn:name="LAST SYNC",type=date,JSONPath=`.status.lastSyncTime`
// +kubebuilder:printcolumn:name="STATUS",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
type PackageRepository struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PackageRepositorySpec   `json:"spec"`
	Status PackageRepositoryStatus `json:"status,omitempty"`
}

// PackageRepositoryList is a list of PackageRepository.
//
// +kubebuilder:object:root=true
type PackageRepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PackageRepository `json:"items"`
}

func init() {
	SchemeBuilder.Register(&PackageRepository{}, &PackageRepositoryList{})
}
