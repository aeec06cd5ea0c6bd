// Package streamserver serves the node role's Stream-mode Trace outputs
// (the output.Hub's handler) to the readers the API server vouches for:
// over TLS, on a listener of its own, each request carrying a bearer
// token that a TokenReview authenticates and a SubjectAccessReview
// allows to get the Trace (group gadget.kinvolk.io, resource traces,
// the Trace's name, in its namespace). Decisions are cached briefly, so
// a reader that reconnects costs the API server nothing more.
//
// It owns the listener, its certificate (a directory watched for
// renewals, or a self-signed one generated at start) and the
// authentication and authorization of readers. It does not know how
// events are produced or buffered, and it caps no clients: the Hub
// does.
package streamserver
