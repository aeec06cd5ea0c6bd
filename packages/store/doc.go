// Package store keeps downloaded package archives and their extracted
// trees under the operator's data directory, keyed by sha256 digest, so a
// restart reuses what was already downloaded and verified:
//
//	<dir>/archives/<sha256>.tgz
//	<dir>/packages/<sha256>/        the extracted package (chart root)
//
// Every write is a temp file or directory renamed into place. An archive
// whose content no longer matches its name is treated as absent and
// removed. The store does not download or load packages.
package store
