package chartrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	helmprovenance "helm.sh/helm/v3/pkg/provenance"
)

// VerifyMode says when provenance must be checked; the values match
// PackageRepository's spec.verify.mode.
type VerifyMode string

const (
	VerifyNever      VerifyMode = "Never"
	VerifyIfPossible VerifyMode = "IfPossible"
	VerifyAlways     VerifyMode = "Always"
)

// Provenance errors.
var (
	// ErrNoProvenance: mode Always and the repository has no .prov file.
	ErrNoProvenance = errors.New("no provenance file")
	// ErrBadProvenance: the .prov file does not verify against the keyring.
	ErrBadProvenance = errors.New("provenance verification failed")
)

// Verification is the outcome of Verify.
type Verification struct {
	// Verified is true when a provenance file was checked and passed.
	Verified bool
	// SignedBy names the signing key's identities.
	SignedBy []string
}

// Verify checks a's Helm provenance file against keyring (an OpenPGP
// public keyring, binary or armored) as mode asks: Never checks nothing,
// IfPossible checks a provenance file when there is one, Always requires
// one. The digest was already checked by Download.
func Verify(a *Archive, mode VerifyMode, keyring []byte) (Verification, error) {
	switch mode {
	case "", VerifyNever:
		return Verification{}, nil
	case VerifyIfPossible, VerifyAlways:
	default:
		return Verification{}, fmt.Errorf("verify mode %q: want Never, IfPossible or Always", mode)
	}
	if len(a.Provenance) == 0 {
		if mode == VerifyAlways {
			return Verification{}, fmt.Errorf("verify %s %s: %w (%s.prov) and verify.mode is Always: sign the package ('helm package --sign') or relax verify.mode", a.Name, a.Version, ErrNoProvenance, a.Filename)
		}
		return Verification{}, nil
	}
	if len(keyring) == 0 {
		return Verification{}, fmt.Errorf("verify %s %s: the keyring is empty: put the signers' public keyring in the keyring Secret", a.Name, a.Version)
	}
	dir, err := os.MkdirTemp("", "gadgetpm-verify-")
	if err != nil {
		return Verification{}, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	// Helm's verifier reads files, and the signature names the archive by
	// its base name.
	ring := filepath.Join(dir, "pubring.gpg")
	chart := filepath.Join(dir, filepath.Base(a.Filename))
	prov := chart + ".prov"
	for p, data := range map[string][]byte{ring: keyring, chart: a.Data, prov: a.Provenance} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return Verification{}, fmt.Errorf("write %s: %w", filepath.Base(p), err)
		}
	}
	sig, err := helmprovenance.NewFromKeyring(ring, "")
	if err != nil {
		return Verification{}, fmt.Errorf("verify %s %s: read keyring: %w", a.Name, a.Version, err)
	}
	v, err := sig.Verify(chart, prov)
	if err != nil {
		return Verification{}, fmt.Errorf("verify %s %s: %w: %v", a.Name, a.Version, ErrBadProvenance, err)
	}
	out := Verification{Verified: true}
	if v.SignedBy != nil {
		for id := range v.SignedBy.Identities {
			out.SignedBy = append(out.SignedBy, id)
		}
	}
	return out, nil
}
