// Package hookcreds gives hook runs API credentials of their own: it
// issues short-lived tokens for one service account through the
// TokenRequest API, keeps the current token and renews it once 80% of its
// lifetime has passed, and renders a kubeconfig that reaches the operator's
// API server with that token (Issuer.Kubeconfig, which satisfies
// pkg/hooks' Credentials). Accounts makes Issuers for packages' own
// service accounts, whose errors name the package.
//
// It copies only where the API server is and how to trust it (server URL,
// CA, TLS server name) from the operator's rest.Config, never the
// operator's own token or client certificate. DefaultRules are the narrow
// rights the default hooks' account is granted.
//
// It does not create service accounts or RBAC objects (the chart and
// `gadgetpm dev` do), write files or run hooks (pkg/hooks does).
package hookcreds
